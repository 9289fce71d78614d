package demo

import "slices"

// PublishedKeys are the Standard Webhooks signing keys written in this
// repository's configurations: the fallbacks of the demo's and the
// examples' `secret: ${VAR:-whsec_…}`. Anyone can read them, so signatures
// made with one prove nothing. A test keeps the list equal to the keys in
// those files.
var PublishedKeys = []string{
	"whsec_EZQGwCu/jl8apnj/X5Y+X2MOFX/knB2EvA4g1VC4694=", // triggers.yaml, the demo
	"whsec_Yq3rT8wZ2mN6pL1kV9cX4bH7jF0sD5gA",             // examples/app-events
	"whsec_9T2mH1Qw6Vx0zR8kLp3sYb5nCd7fGj4u",             // examples/pipelines
	"whsec_3Zlm8D3Uc1iVw4pYCNQfTEP7jTgPawn1",             // examples/event-types
	"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",             // examples/inventory-alerts
	"whsec_pQ8vK2nR7xT4mW9zB3cF6hJ1sL5dG0yA",             // examples/bank-cdc
}

// IsPublishedKey reports whether key is one of PublishedKeys.
func IsPublishedKey(key string) bool { return slices.Contains(PublishedKeys, key) }
