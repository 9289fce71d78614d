package server

import (
	"errors"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"

	"github.com/changehook/changehook/internal/mongoerr"
)

// TestSecondaryMember: with SecondaryAddr, a driver connecting with
// replicaSet= discovers both members, reads with a secondary read
// preference from the secondary (same data), and writes go to the primary;
// a direct connection to the secondary reads and is refused writes (10107);
// in a transaction the driver refuses a
// secondary read preference itself, as the transactions specification says.
func TestSecondaryMember(t *testing.T) {
	s := startTestServer(t, Options{SecondaryAddr: "127.0.0.1:0"}, testHooks{})
	ctx := testContext(t)
	if s.SecondaryAddr() == "" {
		t.Fatal("SecondaryAddr() is empty with a secondary configured")
	}
	client, err := mongo.Connect(options.Client().ApplyURI("mongodb://" + s.Addr() + "/?replicaSet=rs0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(ctx) })
	coll := client.Database("rs").Collection("c")
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}}); err != nil {
		t.Fatalf("insert through the replica set: %v", err)
	}

	var hello bson.M
	if err := client.Database("admin").RunCommand(ctx, bson.D{{Key: "hello", Value: 1}}).Decode(&hello); err != nil {
		t.Fatal(err)
	}
	if hosts, _ := hello["hosts"].(bson.A); len(hosts) != 2 || hello["isWritablePrimary"] != true {
		t.Errorf("primary's hello: hosts %v, isWritablePrimary %v; want two hosts and true", hello["hosts"], hello["isWritablePrimary"])
	}

	secColl := client.Database("rs").Collection("c", options.Collection().SetReadPreference(readpref.Secondary()))
	var got bson.M
	if err := secColl.FindOne(ctx, bson.D{{Key: "_id", Value: 1}}).Decode(&got); err != nil {
		t.Fatalf("read with read preference secondary: %v", err)
	}

	sess, err := client.StartSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.EndSession(ctx)
	if err := sess.StartTransaction(options.Transaction().SetReadPreference(readpref.Secondary())); err != nil {
		t.Fatal(err)
	}
	sctx := mongo.NewSessionContext(ctx, sess)
	err = coll.FindOne(sctx, bson.D{}).Err()
	if err == nil || !strings.Contains(err.Error(), "read preference in a transaction must be primary") {
		t.Errorf("read in a transaction with read preference secondary: %v, want the driver's refusal", err)
	}

	direct, err := mongo.Connect(options.Client().ApplyURI("mongodb://" + s.SecondaryAddr() + "/?directConnection=true&retryWrites=false"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = direct.Disconnect(ctx) })
	var secHello bson.M
	if err := direct.Database("admin").RunCommand(ctx, bson.D{{Key: "hello", Value: 1}}).Decode(&secHello); err != nil {
		t.Fatal(err)
	}
	if secHello["secondary"] != true || secHello["isWritablePrimary"] != false || secHello["me"] == secHello["primary"] {
		t.Errorf("secondary's hello = %v", secHello)
	}
	// (Without retryWrites=false the driver would retry the refused write
	// on the same, still not writable, server until the context ends — as
	// against a MongoDB secondary.)
	dcoll := direct.Database("rs").Collection("c")
	if err := dcoll.FindOne(ctx, bson.D{{Key: "_id", Value: 1}}).Decode(&got); err != nil {
		t.Errorf("find on a direct connection to the secondary: %v", err)
	}
	_, err = dcoll.InsertOne(ctx, bson.D{{Key: "_id", Value: 2}})
	var ce mongo.CommandError
	var we mongo.WriteException
	switch {
	case errors.As(err, &ce) && ce.Code == int32(mongoerr.NotWritablePrimary):
	case errors.As(err, &we) && we.HasErrorCode(int(mongoerr.NotWritablePrimary)):
	default:
		t.Errorf("insert on the secondary: %v, want NotWritablePrimary (10107)", err)
	}

}

// TestSecondaryRefuses: what a secondary answers, command by command (a
// driver on a direct connection always sends primaryPreferred, so the
// refusal of a primary-only read is checked here, not through a driver).
func TestSecondaryRefuses(t *testing.T) {
	rp := func(mode string) bson.E {
		return bson.E{Key: "$readPreference", Value: bson.D{{Key: "mode", Value: mode}}}
	}
	tests := []struct {
		name string
		body bson.D
		want mongoerr.Code // 0: served
	}{
		{"insert", bson.D{{Key: "insert", Value: "c"}, rp("secondary")}, mongoerr.NotWritablePrimary},
		{"find", bson.D{{Key: "find", Value: "c"}}, mongoerr.NotPrimaryNoSecondaryOk},
		{"find", bson.D{{Key: "find", Value: "c"}, rp("primary")}, mongoerr.NotPrimaryNoSecondaryOk},
		{"find", bson.D{{Key: "find", Value: "c"}, rp("secondaryPreferred")}, 0},
		{"find", bson.D{{Key: "find", Value: "c"}, {Key: "autocommit", Value: false}, rp("secondary")}, mongoerr.NotWritablePrimary},
		{"aggregate", bson.D{{Key: "aggregate", Value: "c"}, {Key: "pipeline", Value: bson.A{bson.D{{Key: "$out", Value: "o"}}}}, rp("secondary")}, mongoerr.NotWritablePrimary},
		{"aggregate", bson.D{{Key: "aggregate", Value: "c"}, {Key: "pipeline", Value: bson.A{bson.D{{Key: "$match", Value: bson.D{}}}}}, rp("nearest")}, 0},
		// The lower-case aliases write too.
		{"findandmodify", bson.D{{Key: "findandmodify", Value: "c"}, rp("secondary")}, mongoerr.NotWritablePrimary},
		{"deleteIndexes", bson.D{{Key: "deleteIndexes", Value: "c"}, rp("secondary")}, mongoerr.NotWritablePrimary},
		{"hello", bson.D{{Key: "hello", Value: 1}}, 0},
		{"getMore", bson.D{{Key: "getMore", Value: int64(1)}}, 0},
	}
	for _, tc := range tests {
		err := secondaryRefuses(&Request{Name: tc.name, Body: tc.body})
		var got mongoerr.Code
		var me *mongoerr.Error
		if errors.As(err, &me) {
			got = me.Code
		} else if err != nil {
			t.Errorf("%s %v: %v, not a command error", tc.name, tc.body, err)
			continue
		}
		if got != tc.want {
			t.Errorf("%s %v: code %d, want %d", tc.name, tc.body, got, tc.want)
		}
	}
}

// TestSecondaryExplain: the secondary explains reads (with a read
// preference that allows a secondary, which drivers send on a direct
// connection) and refuses to explain writes with 50746, as MongoDB does.
func TestSecondaryExplain(t *testing.T) {
	s := startTestServer(t, Options{SecondaryAddr: "127.0.0.1:0"}, testHooks{})
	ctx := testContext(t)
	direct := func(rp *readpref.ReadPref) *mongo.Database {
		opts := options.Client().ApplyURI("mongodb://" + s.SecondaryAddr() + "/?directConnection=true")
		if rp != nil {
			opts.SetReadPreference(rp)
		}
		c, err := mongo.Connect(opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Disconnect(ctx) })
		return c.Database("rs")
	}
	find := bson.D{{Key: "explain", Value: bson.D{{Key: "find", Value: "c"}}}}
	update := bson.D{{Key: "explain", Value: bson.D{{Key: "update", Value: "c"}, {Key: "updates", Value: bson.A{
		bson.D{{Key: "q", Value: bson.D{}}, {Key: "u", Value: bson.D{{Key: "$set", Value: bson.D{{Key: "x", Value: 1}}}}}}}}}}}
	tests := []struct {
		name string
		rp   *readpref.ReadPref
		cmd  bson.D
		code mongoerr.Code
	}{
		{"a read with secondaryOk", readpref.SecondaryPreferred(), find, 0},
		{"a write", readpref.SecondaryPreferred(), update, mongoerr.ExplainOnSecondary},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := direct(tc.rp).RunCommand(ctx, tc.cmd).Err()
			var ce mongo.CommandError
			switch {
			case tc.code == 0 && err != nil:
				t.Fatalf("explain: %v", err)
			case tc.code != 0 && (!errors.As(err, &ce) || ce.Code != int32(tc.code)):
				t.Fatalf("explain: %v, want code %d", err, tc.code)
			}
		})
	}
}
