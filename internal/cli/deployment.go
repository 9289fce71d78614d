package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/changehook/changehook/triggers"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// errNoChangeStreams is wrapped by checkChangeStreams' error: the
// deployment cannot open change streams at all.
var errNoChangeStreams = errors.New("the deployment has no change streams")

// checkChangeStreams reads the deployment's hello (isMaster on a server
// without hello) once and returns an error naming the fix when it is a
// standalone mongod or a replica-set member whose set was never initiated:
// neither opens change streams (MongoDB answers 40573), so every trigger
// would fail. When the reply cannot tell (hello fails, or a load balancer
// answers it: serviceId) it returns nil and the triggers' own errors say
// what is wrong.
func checkChangeStreams(ctx context.Context, client *mongo.Client, uri string) error {
	hctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	admin := client.Database("admin")
	reply, err := admin.RunCommand(hctx, bson.D{{Key: "hello", Value: 1}}).Raw()
	if err != nil {
		if reply, err = admin.RunCommand(hctx, bson.D{{Key: "isMaster", Value: 1}}).Raw(); err != nil {
			return nil
		}
	}
	if err := helloChangeStreams(reply); err != nil {
		return fmt.Errorf("check MongoDB at %s: %w", triggers.RedactURI(uri), err)
	}
	return nil
}

// helloChangeStreams judges a hello reply: nil for a replica-set member
// (setName), a mongos (msg "isdbgrid") or a reply that cannot tell (a load
// balancer's, with serviceId); else an error wrapping errNoChangeStreams
// that names the fix.
func helloChangeStreams(hello bson.Raw) error {
	if _, err := hello.LookupErr("serviceId"); err == nil {
		return nil
	}
	if _, err := hello.LookupErr("setName"); err == nil {
		return nil
	}
	if msg, ok := hello.Lookup("msg").StringValueOK(); ok && msg == "isdbgrid" {
		return nil
	}
	if rs, ok := hello.Lookup("isreplicaset").BooleanOK(); ok && rs {
		return fmt.Errorf("%w: the mongod was started with --replSet but its replica set is not initiated; "+
			"run rs.initiate() once (in mongosh), then start changehook again", errNoChangeStreams)
	}
	return fmt.Errorf("%w: it is a standalone mongod, and change streams need a replica set or a sharded cluster; "+
		"a one-node replica set works: restart mongod with --replSet rs0 and run rs.initiate() once (in mongosh), "+
		"or use a sharded cluster or MongoDB Atlas", errNoChangeStreams)
}
