package devdb

import (
	"os"
	"os/exec"
	"testing"
)

func TestZZScratchShell(t *testing.T) {
	s := startTestServer(t, Options{}, testHooks{})
	cmd := exec.Command("/tmp/nodecheck/node_modules/.bin/mongosh", s.URI(), "--norc", "--eval", "printjson(db.hello().isWritablePrimary); db.getSiblingDB('x').c.insertOne({a:1}); printjson(db.getSiblingDB('x').c.find().toArray()); show dbs; db.getSiblingDB('x').c.aggregate([{$count:'n'}]).toArray()")
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "MONGOSH_NO_TELEMETRY=1")
	out, err := cmd.CombinedOutput()
	t.Logf("%s\nerr=%v", out, err)
}
