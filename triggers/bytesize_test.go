package triggers

import (
	"errors"
	"testing"
)

// TestParseByteSize: sizes read as the configuration writes them, and the
// error for each kind of value it cannot take.
func TestParseByteSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		err  error
	}{
		{"65536", 65536, nil},
		{"512KiB", 512 << 10, nil},
		{"64 MiB", 64 << 20, nil},
		{"1_024B", 1024, nil},
		{" 1GiB ", 1 << 30, nil},
		{"8388607TiB", 8388607 << 40, nil},
		{"8388608TiB", 0, ErrSizeTooLarge},
		{"99999999999999999999", 0, ErrSizeTooLarge},
		{"-1MiB", 0, ErrNegativeSize},
		{"1.5GiB", 0, ErrNotASize},
		{"1GB", 0, ErrNotASize},
		{"", 0, ErrNotASize},
	} {
		got, err := ParseByteSize(tc.in)
		if got != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d, %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}
