package server_test

import (
	"fmt"
	"reflect"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/changehook/changehook/devdb/internal/server"
	"github.com/changehook/changehook/internal/mongoerr"
)

func TestListCommands(t *testing.T) {
	for _, testCommands := range []bool{false, true} {
		t.Run(fmt.Sprintf("test commands %v", testCommands), func(t *testing.T) {
			ctx := crudCtx(t)
			srv, err := server.Start(ctx, server.Options{EnableTestCommands: testCommands})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = srv.Close() })
			client, err := mongo.Connect(options.Client().ApplyURI(srv.URI()))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = client.Disconnect(crudCtx(t)) })
			var out bson.D
			if err := client.Database("admin").RunCommand(ctx, bson.D{{Key: "listCommands", Value: int32(1)}}).Decode(&out); err != nil {
				t.Fatal(err)
			}
			cmds, _ := at(out, "commands").(bson.D)
			var names []string
			for _, e := range cmds {
				names = append(names, e.Key)
			}
			if !sortedStrings(names) {
				t.Errorf("commands not in name order: %v", names)
			}
			tests := []struct {
				name                 string
				present              bool
				secondaryOk, adminOk bool
				overrideOk           bool // secondaryOverrideOk: a read a secondary serves on opt-in
				apiVersions          bson.A
			}{
				{name: "find", present: true, overrideOk: true, apiVersions: bson.A{"1"}},
				{name: "explain", present: true, overrideOk: true, apiVersions: bson.A{"1"}},
				{name: "listCommands", present: true, secondaryOk: true, apiVersions: bson.A{}},
				{name: "insert", present: true, secondaryOk: false, apiVersions: bson.A{"1"}},
				{name: "listDatabases", present: true, overrideOk: true, adminOk: true, apiVersions: bson.A{"1"}},
				{name: "distinct", present: true, overrideOk: true, apiVersions: bson.A{}},
				{name: "findandmodify", present: true, secondaryOk: false, apiVersions: bson.A{}},
				{name: "deleteIndexes", present: true, secondaryOk: false, apiVersions: bson.A{}},
				{name: "mapReduce", present: false},
				{name: "configureFailPoint", present: testCommands, secondaryOk: true, adminOk: true, apiVersions: bson.A{}},
			}
			for _, tc := range tests {
				d := at(cmds, tc.name)
				if (d != nil) != tc.present {
					t.Errorf("%s listed = %v, want %v", tc.name, d != nil, tc.present)
					continue
				}
				if d == nil {
					continue
				}
				want := bson.D{
					{Key: "help", Value: at(d, "help")},
					{Key: "requiresAuth", Value: false},
					{Key: "secondaryOk", Value: tc.secondaryOk},
					{Key: "adminOnly", Value: tc.adminOk},
				}
				if tc.overrideOk {
					want = append(want, bson.E{Key: "secondaryOverrideOk", Value: true})
				}
				want = append(want, bson.D{
					{Key: "apiVersions", Value: tc.apiVersions},
					{Key: "deprecatedApiVersions", Value: bson.A{}},
				}...)
				if !reflect.DeepEqual(d, want) {
					t.Errorf("%s = %v, want %v", tc.name, d, want)
				}
				if h, _ := at(d, "help").(string); h == "" {
					t.Errorf("%s has no help", tc.name)
				}
			}
			// Every listed command is one devdb runs: none is CommandNotFound.
			for _, name := range names {
				err := client.Database("admin").RunCommand(ctx, bson.D{{Key: name, Value: 1}}).Err()
				if crudCode(err) == mongoerr.CommandNotFound {
					t.Errorf("%s is listed but not found: %v", name, err)
				}
			}
		})
	}
}

// sortedStrings reports whether s is in ascending order.
func sortedStrings(s []string) bool {
	for i := 1; i < len(s); i++ {
		if s[i-1] > s[i] {
			return false
		}
	}
	return true
}
