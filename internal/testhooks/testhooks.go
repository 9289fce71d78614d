// Package testhooks holds switches that tests set to make the product check
// itself harder than it can afford to in production. Production code reads
// them and never sets them; each is off by default.
package testhooks

// PoisonReleased makes a buffer that is handed back for reuse (a batched
// trigger's read-ahead reply, once the dispatcher released every event in
// it) be overwritten first, so that a read of released bytes sees garbage
// instead of plausible data: a test then fails instead of passing by luck.
// Set it before anything runs (it is read without synchronisation).
var PoisonReleased bool
