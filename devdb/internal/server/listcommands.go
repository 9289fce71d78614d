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
// when devdb's secondary member always serves it (neither a write it
// refuses nor a read it serves only when the read preference allows a
// secondary, which is secondaryOverrideOk), as MongoDB reports them.
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
		entry := bson.D{
			{Key: "help", Value: doc.help},
			{Key: "requiresAuth", Value: false},
			// As MongoDB: secondaryOk only for the commands a secondary
			// always serves; the reads it serves when the read preference
			// allows (opt-in) say secondaryOverrideOk instead.
			{Key: "secondaryOk", Value: !secondaryWrites[name] && !secondaryReads[name]},
			{Key: "adminOnly", Value: doc.adminOnly},
		}
		if secondaryReads[name] {
			entry = append(entry, bson.E{Key: "secondaryOverrideOk", Value: true})
		}
		entry = append(entry, bson.D{
			{Key: "apiVersions", Value: versions},
			{Key: "deprecatedApiVersions", Value: bson.A{}},
		}...)
		cmds = append(cmds, bson.E{Key: name, Value: entry})
	}
	return bson.D{{Key: "commands", Value: cmds}}, nil
}
