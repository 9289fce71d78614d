package cli

import "testing"

func TestClientOptionsPoolFitsTheStreams(t *testing.T) {
	tests := []struct {
		uri     string
		streams int
		want    uint64 // 0: the driver's default (unset)
	}{
		{"mongodb://127.0.0.1:27017/", 1, 0},
		{"mongodb://127.0.0.1:27017/", 68, 0},
		{"mongodb://127.0.0.1:27017/", 69, 101},
		{"mongodb://127.0.0.1:27017/", 201, 233},
		{"mongodb://127.0.0.1:27017/?maxPoolSize=50", 201, 50},
		{"mongodb://127.0.0.1:27017/?maxPoolSize=0", 201, 0},
	}
	for _, tc := range tests {
		o := clientOptions(tc.uri, tc.streams)
		var got uint64
		if o.MaxPoolSize != nil {
			got = *o.MaxPoolSize
		}
		if got != tc.want {
			t.Errorf("clientOptions(%q, %d): maxPoolSize %d, want %d", tc.uri, tc.streams, got, tc.want)
		}
	}
}
