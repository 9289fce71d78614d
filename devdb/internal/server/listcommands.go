package server

import (
	"context"
	"maps"
	"slices"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// cmdListCommands answers listCommands: every command in devdb's dispatch
// table, by name, with its description as registered (command). devdb has
// no authentication, so no command requires it; a command is secondaryOk
// when devdb's secondary member does not refuse it as a write.
func (s *Server) cmdListCommands(context.Context, *Request) (bson.D, error) {
	names := slices.Sorted(maps.Keys(s.handlers))
	cmds := make(bson.D, 0, len(names))
	for _, name := range names {
		doc := s.commands[name]
		if doc == nil {
			doc = &commandDoc{}
		}
		versions := bson.A{}
		if doc.v1 {
			versions = bson.A{"1"}
		}
		cmds = append(cmds, bson.E{Key: name, Value: bson.D{
			{Key: "help", Value: doc.help},
			{Key: "requiresAuth", Value: false},
			{Key: "secondaryOk", Value: !secondaryWrites[name]},
			{Key: "adminOnly", Value: doc.adminOnly},
			{Key: "apiVersions", Value: versions},
			{Key: "deprecatedApiVersions", Value: bson.A{}},
		}})
	}
	return bson.D{{Key: "commands", Value: cmds}}, nil
}
