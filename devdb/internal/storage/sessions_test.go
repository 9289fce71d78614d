package storage

import (
	"bytes"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

func putSession(t *testing.T, e *Engine, key string, rec *SessionTxn, lim SessionLimits) {
	t.Helper()
	if err := e.Update(func(tx *Tx) error { return tx.PutSessionTxn([]byte(key), rec, lim) }); err != nil {
		t.Fatalf("PutSessionTxn(%s): %v", key, err)
	}
}

func getSession(t *testing.T, e *Engine, key string, now time.Time, timeout time.Duration) *SessionTxn {
	t.Helper()
	var rec *SessionTxn
	if err := e.View(func(tx *Tx) error {
		var err error
		rec, err = tx.SessionTxn([]byte(key), now, timeout)
		return err
	}); err != nil {
		t.Fatalf("SessionTxn(%s): %v", key, err)
	}
	return rec
}

func sessionStats(t *testing.T, e *Engine) (int, int64) {
	t.Helper()
	var n int
	var size int64
	_ = e.View(func(tx *Tx) error { n, size = tx.SessionStats(); return nil })
	return n, size
}

func TestSessionTxnRoundTripAndReplace(t *testing.T) {
	e := openTest(t, Options{})
	t0 := time.Unix(1_700_000_000, 0)
	reply, _ := bson.Marshal(bson.D{{Key: "n", Value: int32(1)}})
	if got := getSession(t, e, "s1", t0, time.Minute); got != nil {
		t.Fatalf("empty table returned %+v", got)
	}
	putSession(t, e, "s1", &SessionTxn{TxnNumber: 1, Command: "insert db.c 1", Reply: reply, LastUse: t0}, SessionLimits{})
	putSession(t, e, "s1", &SessionTxn{TxnNumber: 2, Command: "update db.c 1", Reply: reply, LastUse: t0.Add(time.Second)}, SessionLimits{})
	got := getSession(t, e, "s1", t0.Add(time.Second), time.Minute)
	if got == nil || got.TxnNumber != 2 || got.Command != "update db.c 1" || !bytes.Equal(got.Reply, reply) || !got.LastUse.Equal(t0.Add(time.Second)) {
		t.Fatalf("SessionTxn = %+v, want txn 2 update with the reply", got)
	}
	if n, size := sessionStats(t, e); n != 1 || size != int64(sessionHeader+len("update db.c 1")+len(reply)) {
		t.Fatalf("stats = %d records, %d bytes; want 1 record of its encoded size", n, size)
	}
}

func TestSessionTxnLimits(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	rec := func(i int) *SessionTxn {
		return &SessionTxn{TxnNumber: int64(i), Command: "insert db.c 1", Reply: []byte("0123456789"), LastUse: t0.Add(time.Duration(i) * time.Second)}
	}
	recSize := int64(sessionHeader + len("insert db.c 1") + 10)
	tests := []struct {
		name string
		lim  SessionLimits
		// touch re-writes s0 after the others, making it the most recently used.
		touch bool
		want  []string // sessions left after writing s0..s4 (and the touch)
	}{
		{name: "no limits", want: []string{"s0", "s1", "s2", "s3", "s4"}},
		{name: "max sessions evicts oldest", lim: SessionLimits{MaxSessions: 3}, want: []string{"s2", "s3", "s4"}},
		{name: "max sessions keeps recently used", lim: SessionLimits{MaxSessions: 3}, touch: true, want: []string{"s0", "s3", "s4"}},
		{name: "max bytes", lim: SessionLimits{MaxBytes: 2 * recSize}, want: []string{"s3", "s4"}},
		{name: "max bytes below one record keeps the newest", lim: SessionLimits{MaxBytes: 1}, want: []string{"s4"}},
		{name: "timeout expires idle sessions", lim: SessionLimits{Timeout: 2500 * time.Millisecond}, want: []string{"s2", "s3", "s4"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := openTest(t, Options{})
			for i := range 5 {
				putSession(t, e, "s"+string(rune('0'+i)), rec(i), tc.lim)
			}
			if tc.touch {
				r := rec(5)
				putSession(t, e, "s0", r, tc.lim)
			}
			var left []string
			for i := range 5 {
				k := "s" + string(rune('0'+i))
				if getSession(t, e, k, t0, 0) != nil {
					left = append(left, k)
				}
			}
			if !equalStrings(left, tc.want) {
				t.Fatalf("sessions left = %v, want %v", left, tc.want)
			}
			if n, size := sessionStats(t, e); n != len(tc.want) || size != int64(len(tc.want))*recSize {
				t.Fatalf("stats = %d records, %d bytes; want %d records of %d bytes", n, size, len(tc.want), recSize)
			}
		})
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestSessionTxnExpiredIsAbsent(t *testing.T) {
	e := openTest(t, Options{})
	t0 := time.Unix(1_700_000_000, 0)
	putSession(t, e, "s", &SessionTxn{TxnNumber: 7, LastUse: t0}, SessionLimits{})
	tests := []struct {
		name    string
		now     time.Time
		timeout time.Duration
		present bool
	}{
		{"within timeout", t0.Add(30 * time.Minute), 30 * time.Minute, true},
		{"after timeout", t0.Add(30*time.Minute + time.Nanosecond), 30 * time.Minute, false},
		{"no timeout", t0.Add(1000 * time.Hour), 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := getSession(t, e, "s", tc.now, tc.timeout); (got != nil) != tc.present {
				t.Fatalf("SessionTxn = %+v, want present %v", got, tc.present)
			}
		})
	}
}

func TestSessionTxnPersistsAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Unix(1_700_000_000, 0)
	e, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	putSession(t, e, "s", &SessionTxn{TxnNumber: 3, Command: "delete db.c 1", Reply: []byte{5, 0, 0, 0, 0}, LastUse: t0}, SessionLimits{})
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = openTest(t, Options{Dir: dir})
	if got := getSession(t, e, "s", t0, time.Minute); got == nil || got.TxnNumber != 3 || got.Command != "delete db.c 1" {
		t.Fatalf("after reopen SessionTxn = %+v, want txn 3", got)
	}
}

func TestPutSessionTxnRejects(t *testing.T) {
	e := openTest(t, Options{})
	tests := []struct {
		name string
		key  []byte
		rec  *SessionTxn
	}{
		{"empty key", nil, &SessionTxn{}},
		{"long key", make([]byte, MaxSessionKey+1), &SessionTxn{}},
		{"long command", []byte("s"), &SessionTxn{Command: string(make([]byte, 1<<16))}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := e.Update(func(tx *Tx) error { return tx.PutSessionTxn(tc.key, tc.rec, SessionLimits{}) })
			if err == nil {
				t.Fatal("PutSessionTxn succeeded, want an error")
			}
		})
	}
	t.Run("read-only transaction", func(t *testing.T) {
		err := e.View(func(tx *Tx) error { return tx.PutSessionTxn([]byte("s"), &SessionTxn{}, SessionLimits{}) })
		if err == nil {
			t.Fatal("PutSessionTxn in View succeeded, want an error")
		}
	})
}
