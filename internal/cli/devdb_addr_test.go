package cli

import (
	"strings"
	"testing"
)

func TestDevdbAddrValidation(t *testing.T) {
	tests := []struct {
		addr, wantErr string
		remote        bool
	}{
		{"127.0.0.1:27017", "", false},
		{"localhost:0", "", false},
		{"[::1]:1", "", false},
		{"0.0.0.0:1", "", true},
		{"db.example.com:27017", "", true},
		{"999.1.1.1:1", `"999.1.1.1" is neither an IP address nor a host name`, false},
		{"127.0.0.1:99999", `port "99999" is not a number from 0 to 65535`, false},
		{"127.0.0.1:http", `port "http" is not a number from 0 to 65535`, false},
		{"bad_host!:1", `"bad_host!" is neither an IP address nor a host name`, false},
		{"nohost", `"nohost" is not HOST:PORT`, false},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			remote, err := isRemote(tt.addr)
			if tt.wantErr == "" {
				if err != nil || remote != tt.remote {
					t.Fatalf("isRemote = %v, %v; want %v, nil", remote, err, tt.remote)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("isRemote err = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}
