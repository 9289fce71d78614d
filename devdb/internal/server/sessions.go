package server

import (
	"context"
	"crypto/sha256"
	"sort"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/internal/mongoerr"
	"github.com/changehook/changehook/internal/mql"
)

// maxLocalSessions bounds the logical session cache. MongoDB's default
// (maxSessions) is 1,000,000 and refuses new sessions beyond it; devdb keeps
// fewer and forgets the least recently used one instead, which a client can
// only see through $listLocalSessions.
const maxLocalSessions = 10000

// sessionTimeout is how long an unused session stays in the cache
// (localLogicalSessionTimeoutMinutes, reported by hello).
const sessionTimeout = time.Duration(admSessionTimeoutMinutes) * time.Minute

// noUserUID is a session's uid when no user is authenticated: the SHA-256
// of the empty user name, as MongoDB computes it.
var noUserUID = sha256.Sum256(nil)

// sessionCache is the server's logical session cache: the session ids that
// commands carried in lsid (or startSession returned), with their last use.
// It is what $listLocalSessions lists; endSessions removes entries.
type sessionCache struct {
	mu sync.Mutex
	m  map[[16]byte]time.Time
}

// sessionKey reads the 16-byte UUID of an lsid document ({id: UUID}).
func sessionKey(lsid any) ([16]byte, bool) {
	var k [16]byte
	d, ok := lsid.(bson.D)
	if !ok {
		return k, false
	}
	v, ok := fieldOf(d, "id")
	if !ok {
		return k, false
	}
	b, ok := v.(bson.Binary)
	if !ok || b.Subtype != 4 || len(b.Data) != 16 {
		return k, false
	}
	copy(k[:], b.Data)
	return k, true
}

// touch records a use of session k at now, evicting expired sessions, then
// the least recently used one, when the cache is full.
func (c *sessionCache) touch(k [16]byte, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[[16]byte]time.Time)
	}
	if _, ok := c.m[k]; !ok && len(c.m) >= maxLocalSessions {
		var oldest [16]byte
		var oldestAt time.Time
		for id, at := range c.m {
			if now.Sub(at) > sessionTimeout {
				delete(c.m, id)
				continue
			}
			if oldestAt.IsZero() || at.Before(oldestAt) {
				oldest, oldestAt = id, at
			}
		}
		if len(c.m) >= maxLocalSessions {
			delete(c.m, oldest)
		}
	}
	c.m[k] = now
}

// end removes session k.
func (c *sessionCache) end(k [16]byte) {
	c.mu.Lock()
	delete(c.m, k)
	c.mu.Unlock()
}

// list returns the sessions used within the timeout, most recently used
// first, as $listLocalSessions documents.
func (c *sessionCache) list(now time.Time) []bson.D {
	type entry struct {
		id [16]byte
		at time.Time
	}
	c.mu.Lock()
	entries := make([]entry, 0, len(c.m))
	for id, at := range c.m {
		if now.Sub(at) > sessionTimeout {
			delete(c.m, id)
			continue
		}
		entries = append(entries, entry{id, at})
	}
	c.mu.Unlock()
	sort.Slice(entries, func(i, j int) bool { return entries[i].at.After(entries[j].at) })
	docs := make([]bson.D, len(entries))
	for i, e := range entries {
		docs[i] = bson.D{
			{Key: "_id", Value: bson.D{
				{Key: "id", Value: bson.Binary{Subtype: 4, Data: e.id[:]}},
				{Key: "uid", Value: bson.Binary{Subtype: 0, Data: noUserUID[:]}},
			}},
			{Key: "lastUse", Value: bson.NewDateTimeFromTime(e.at)},
		}
	}
	return docs
}

// trackSession records the session a command carries in lsid.
func (s *Server) trackSession(req *Request) {
	if v, ok := cmdField(req.Body, "lsid"); ok {
		if k, ok := sessionKey(v); ok {
			s.sessions.touch(k, s.now())
		}
	}
}

// cmdEndSessions removes the listed sessions from the cache
// ({endSessions: [{id: UUID}, …]}).
func (s *Server) cmdEndSessions(_ context.Context, req *Request) (bson.D, error) {
	v := req.Body[0].Value
	ids, ok := v.(bson.A)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "BSON field '%s.%s' is the wrong type '%s', expected type 'array'", req.Name, req.Name, mql.TypeName(v))
	}
	var keys [][16]byte
	for _, id := range ids {
		if k, ok := sessionKey(id); ok {
			s.sessions.end(k)
			keys = append(keys, k)
		}
	}
	if len(keys) > 0 {
		s.abortSessions(keys)
	}
	return bson.D{}, nil
}

// cmdKillSessions aborts the open transactions of the listed sessions
// (killSessions: [{id: UUID}, …]), of every session (killAllSessions,
// killAllSessionsByPattern: devdb has no users, so every pattern matches
// every session).
func (s *Server) cmdKillSessions(_ context.Context, req *Request) (bson.D, error) {
	if req.Name != "killSessions" {
		s.abortSessions(nil)
		return bson.D{}, nil
	}
	v := req.Body[0].Value
	ids, ok := v.(bson.A)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "BSON field '%s.%s' is the wrong type '%s', expected type 'array'", req.Name, req.Name, mql.TypeName(v))
	}
	keys := make([][16]byte, 0, len(ids))
	for _, id := range ids {
		if k, ok := sessionKey(id); ok {
			keys = append(keys, k)
		}
	}
	if len(keys) > 0 {
		s.abortSessions(keys)
	}
	return bson.D{}, nil
}

// listLocalSessionsSource checks a leading {$listLocalSessions: {...}} stage
// and returns the sessions it lists. MongoDB runs it only as the first stage
// of a collection-less aggregate ({aggregate: 1}); without authentication every
// session belongs to the same (empty) user, so allUsers and users select
// the same sessions.
func (s *Server) listLocalSessionsSource(req *Request, collectionLess bool, spec any) ([]bson.D, error) {
	if !collectionLess {
		return nil, mongoerr.Errorf(mongoerr.InvalidNamespace, "$listLocalSessions must be run with {aggregate: 1}")
	}
	d, ok := spec.(bson.D)
	if !ok {
		return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "$listLocalSessions options must be specified in an object, but found: %s", mql.TypeName(spec))
	}
	for _, e := range d {
		switch e.Key {
		case "allUsers":
			if _, ok := e.Value.(bool); !ok {
				return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "BSON field '$listLocalSessions.allUsers' is the wrong type '%s', expected type 'bool'", mql.TypeName(e.Value))
			}
		case "users":
			if _, ok := e.Value.(bson.A); !ok {
				return nil, mongoerr.Errorf(mongoerr.TypeMismatch, "BSON field '$listLocalSessions.users' is the wrong type '%s', expected type 'array'", mql.TypeName(e.Value))
			}
		default:
			return nil, mongoerr.Errorf(mongoerr.IDLUnknownField, "BSON field '$listLocalSessions.%s' is an unknown field.", e.Key)
		}
	}
	return s.sessions.list(s.now()), nil
}
