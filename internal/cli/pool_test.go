package cli

import (
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/changehook/changehook/triggers"
)

func TestClientOptionsPoolFitsTheStreams(t *testing.T) {
	tests := []struct {
		uri     string
		streams int
		want    uint64 // 0: the driver's default (unset)
	}{
		{"mongodb://127.0.0.1:27017/", 1, 0},
		{"mongodb://127.0.0.1:27017/", 34, 0},
		{"mongodb://127.0.0.1:27017/", 35, 102},
		{"mongodb://127.0.0.1:27017/", 201, 434},
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

func TestStreamCountCountsPartitions(t *testing.T) {
	cfg := &triggers.Config{Triggers: []*triggers.Trigger{
		{Name: "a", Enabled: true},
		{Name: "b", Enabled: true, Partitions: 8},
		{Name: "c", Enabled: false, Partitions: 4},
	}}
	if got, want := streamCount(cfg), 2+1+8; got != want {
		t.Errorf("streamCount = %d, want %d (controls and dead letters + a + b's 8 partitions; c disabled)", got, want)
	}
}

// manyTriggers returns a configuration on uri with n enabled triggers.
func manyTriggers(uri string, n int) *triggers.Config {
	cfg := &triggers.Config{MongoDB: triggers.MongoDBConfig{URI: uri}}
	for i := range n {
		cfg.Triggers = append(cfg.Triggers, &triggers.Trigger{Name: "t" + strings.Repeat("x", i), Enabled: true})
	}
	return cfg
}

func TestReloadBeyondThePoolIsRefused(t *testing.T) {
	const uri = "mongodb://127.0.0.1:27017/"
	running := manyTriggers(uri, 10)
	rl := &reloader{log: slog.New(slog.NewTextHandler(io.Discard, nil)), cfg: running, poolCap: poolCapacity(uri, streamCount(running))}
	if rl.poolCap != defaultMaxPoolSize {
		t.Fatalf("poolCap = %d, want the driver default %d for 12 streams", rl.poolCap, defaultMaxPoolSize)
	}
	if err := rl.fitsPool(manyTriggers(uri, 66)); err != nil {
		t.Errorf("66 triggers + controls + dead letters + headroom = 100 fit a pool of 100, got %v", err)
	}
	err := rl.fitsPool(manyTriggers(uri, 67))
	want := "the new configuration keeps 69 change streams open (one per trigger partition, one for controls and one for dead letters), but the connection pool was sized for at most 100 at start (room for 68 streams); restart changehook to apply it, or set maxPoolSize in the MongoDB URI"
	if err == nil || err.Error() != want {
		t.Errorf("fitsPool(67 triggers) = %v, want %q", err, want)
	}

	// A pool size the user chose in the URI is theirs: warned, not refused.
	const chosen = "mongodb://127.0.0.1:27017/?maxPoolSize=20"
	var logged strings.Builder
	rl = &reloader{log: slog.New(slog.NewTextHandler(&logged, nil)), cfg: manyTriggers(chosen, 1), poolCap: poolCapacity(chosen, 2)}
	if err := rl.fitsPool(manyTriggers(chosen, 30)); err != nil {
		t.Errorf("fitsPool with maxPoolSize in the URI = %v, want nil (a warning)", err)
	}
	if !strings.Contains(logged.String(), "maxPoolSize in the MongoDB URI is smaller") {
		t.Errorf("no warning logged: %q", logged.String())
	}
}
