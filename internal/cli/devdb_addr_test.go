package cli

import (
	"net"
	"os"
	"path/filepath"
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

// TestDevdbHelpNamesItsOwnDefaults: devdb reads no configuration, so its
// log flags' help gives devdb's defaults, not "the config's log.format".
func TestDevdbHelpNamesItsOwnDefaults(t *testing.T) {
	code, out, _ := run(t, nil, "", "devdb", "--help")
	if code != ExitOK || strings.Contains(out, "the config's") ||
		!strings.Contains(out, "log format: text or json (default: text)") ||
		!strings.Contains(out, "log level: debug, info, warn or error (default: warn)") {
		t.Errorf("devdb --help (exit %d):\n%s", code, out)
	}
}

// TestDevdbAddressInUse: when devdb's port is taken, devdb and dev say to
// pass --addr 127.0.0.1:0 (devdb --secondary-addr: --secondary-addr), as
// the admin server's error does for --admin-addr.
func TestDevdbAddressInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	taken := ln.Addr().String()
	for _, tc := range []struct {
		name string
		args []string
		hint string
	}{
		{"devdb", []string{"devdb", "--addr", taken, "--data", t.TempDir()}, "pass --addr 127.0.0.1:0 for any free port"},
		{"devdb secondary", []string{"devdb", "--addr", "127.0.0.1:0", "--secondary-addr", taken, "--data", t.TempDir()}, "pass --secondary-addr 127.0.0.1:0 for any free port"},
		{"dev", []string{"dev", "--demo", "--addr", taken, "--admin-addr", "off"}, "pass --addr 127.0.0.1:0 for any free port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := runWith(t, t.TempDir(), nil, tc.args...)
			if code != ExitFailure || !strings.Contains(errOut, "address already in use") || !strings.Contains(errOut, tc.hint) {
				t.Errorf("exit %d, stderr:\n%s", code, errOut)
			}
		})
	}
}

// TestDemoReceiverAddressInUse: when the demo receiver's port is taken,
// dev --demo advises what moves it: CHANGEHOOK_DEMO_URL for the built-in
// configuration or a file whose trigger URL comes from it; for a file that
// sets the URL itself (which ignores the variable), the trigger, its URL
// and freeing the port or changing the URL in the file.
func TestDemoReceiverAddressInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	takenURL := "http://" + ln.Addr().String() + "/hook"
	dir := t.TempDir()
	const trigger = "triggers:\n  - name: orders\n    database: shop\n    collection: orders\n    webhook:\n      url: "
	fixed := filepath.Join(dir, "fixed.yaml")
	fromVar := filepath.Join(dir, "var.yaml")
	for file, url := range map[string]string{fixed: takenURL, fromVar: "${CHANGEHOOK_DEMO_URL:-" + takenURL + "}"} {
		if err := os.WriteFile(file, []byte(trigger+url+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name    string
		args    []string
		vars    map[string]string
		want    []string
		notWant string
	}{
		{name: "built-in", args: []string{"--demo"}, vars: map[string]string{"CHANGEHOOK_DEMO_URL": takenURL},
			want: []string{"set CHANGEHOOK_DEMO_URL to a free address"}},
		{name: "file with the variable", args: []string{"-c", fromVar, "--demo"},
			want: []string{"set CHANGEHOOK_DEMO_URL to a free address"}},
		{name: "file with a fixed URL", args: []string{"-c", fixed, "--demo"},
			want:    []string{"trigger orders's webhook URL " + takenURL, "free that port or change the URL in " + fixed},
			notWant: "CHANGEHOOK_DEMO_URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"dev"}, tc.args...)
			args = append(args, "--addr", "127.0.0.1:0", "--admin-addr", "off")
			code, _, errOut := runWith(t, t.TempDir(), tc.vars, args...)
			if code != ExitFailure || !strings.Contains(errOut, "address already in use") {
				t.Fatalf("exit %d, want %d with address already in use; stderr:\n%s", code, ExitFailure, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
			if tc.notWant != "" && strings.Contains(errOut, tc.notWant) {
				t.Errorf("stderr mentions %s, which the file ignores:\n%s", tc.notWant, errOut)
			}
		})
	}
}

// TestDevdbOplogFlags: a value --oplog-max-bytes or --oplog-max-age
// cannot read is a usage error naming the flag and the forms it accepts,
// never a bare "parse error" (TestDevdbOplogFlagValues: the values it
// reads); devdb's usage line lists both flags.
func TestDevdbOplogFlags(t *testing.T) {
	for _, tc := range []struct{ args, want []string }{
		{[]string{"--oplog-max-bytes", "1MB"}, []string{`invalid value "1MB" for flag -oplog-max-bytes: not a size: use bytes, or a whole number with KiB, MiB, GiB or TiB, such as 268435456 or 256MiB`}},
		{[]string{"--oplog-max-bytes", "256 MB"}, []string{"-oplog-max-bytes: not a size"}},
		{[]string{"--oplog-max-bytes", "-1"}, []string{"-oplog-max-bytes: a size cannot be negative"}},
		{[]string{"--oplog-max-bytes", "9999999999TiB"}, []string{"-oplog-max-bytes: size too large"}},
		{[]string{"--oplog-max-age", "1d"}, []string{`invalid value "1d" for flag -oplog-max-age: not a duration: d (days) is not a unit; write 24h for 1d`}},
		{[]string{"--oplog-max-age", "soon"}, []string{"-oplog-max-age: not a duration: use a number with a unit ns, us, ms, s, m or h, such as 90m, 24h or 1h30m"}},
		{[]string{"--oplog-max-age", "-1h"}, []string{"-oplog-max-age: a duration cannot be negative"}},
	} {
		code, _, errOut := run(t, nil, "", append([]string{"devdb", "--addr", "127.0.0.1:0", "--data", t.TempDir()}, tc.args...)...)
		if code != ExitUsage || strings.Contains(errOut, "parse error") {
			t.Errorf("devdb %v: exit %d, want %d\n%s", tc.args, code, ExitUsage, errOut)
		}
		for _, w := range tc.want {
			if !strings.Contains(errOut, w) {
				t.Errorf("devdb %v: stderr lacks %q:\n%s", tc.args, w, errOut)
			}
		}
	}
	code, out, _ := run(t, nil, "", "devdb", "--help")
	if code != ExitOK || !strings.Contains(out, "[--oplog-max-bytes SIZE] [--oplog-max-age DURATION]") {
		t.Errorf("devdb --help's usage line omits the oplog flags (exit %d):\n%s", code, out)
	}
}
