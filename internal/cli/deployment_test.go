package cli

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/changehook/changehook/internal/devdbtest"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestHelloChangeStreams judges hello replies as MongoDB's deployments
// send them: a standalone mongod (no setName, no msg) and an uninitiated
// --replSet member are refused with the fix; a replica-set member, a
// mongos and a load balancer's reply (which cannot tell) pass.
func TestHelloChangeStreams(t *testing.T) {
	tests := []struct {
		name  string
		hello bson.D
		want  []string // parts of the error; nil: no error
	}{
		{"standalone", bson.D{{Key: "isWritablePrimary", Value: true}, {Key: "maxWireVersion", Value: int32(21)}, {Key: "ok", Value: 1.0}},
			[]string{"standalone mongod", "replica set or a sharded cluster", "--replSet rs0", "rs.initiate()"}},
		{"uninitiated replica set member", bson.D{{Key: "isWritablePrimary", Value: false}, {Key: "secondary", Value: false}, {Key: "isreplicaset", Value: true}, {Key: "ok", Value: 1.0}},
			[]string{"not initiated", "rs.initiate()"}},
		{"replica set primary", bson.D{{Key: "isWritablePrimary", Value: true}, {Key: "setName", Value: "rs0"}, {Key: "hosts", Value: bson.A{"db:27017"}}, {Key: "ok", Value: 1.0}}, nil},
		{"replica set secondary", bson.D{{Key: "isWritablePrimary", Value: false}, {Key: "secondary", Value: true}, {Key: "setName", Value: "rs0"}, {Key: "ok", Value: 1.0}}, nil},
		{"mongos", bson.D{{Key: "isWritablePrimary", Value: true}, {Key: "msg", Value: "isdbgrid"}, {Key: "ok", Value: 1.0}}, nil},
		{"load balancer", bson.D{{Key: "isWritablePrimary", Value: true}, {Key: "serviceId", Value: bson.NewObjectID()}, {Key: "ok", Value: 1.0}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, err := bson.Marshal(tt.hello)
			if err != nil {
				t.Fatal(err)
			}
			err = helloChangeStreams(raw)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("helloChangeStreams = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, errNoChangeStreams) {
				t.Fatalf("helloChangeStreams = %v, want errNoChangeStreams", err)
			}
			for _, s := range tt.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
		})
	}
}

// TestCheckChangeStreamsReplicaSet: devdb (a one-node replica set, as dev
// runs it) passes the start-time check.
func TestCheckChangeStreamsReplicaSet(t *testing.T) {
	srv, client := devdbtest.Start(t)
	if err := checkChangeStreams(context.Background(), client, srv.URI()); err != nil {
		t.Fatalf("checkChangeStreams on devdb = %v, want nil", err)
	}
}
