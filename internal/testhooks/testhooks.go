// Package testhooks holds switches that tests set to make the product check
// itself harder than it can afford to in production. Production code reads
// them and never sets them; each is off by default.
package testhooks

import "sync"

// PoisonReleased makes a buffer that is handed back for reuse (a batched
// trigger's read-ahead reply, once the dispatcher released every event in
// it) be overwritten first, so that a read of released bytes sees garbage
// instead of plausible data: a test then fails instead of passing by luck.
// Set it before anything runs (it is read without synchronisation).
var PoisonReleased bool

// RefuseSplitLargeEvent holds, as keys, the listen addresses (host:port,
// as devdb's Server.Addr returns them) of devdb servers that refuse the
// $changeStreamSplitLargeEvent stage as a MongoDB server before 6.0.9
// does: "Unrecognized pipeline stage name" (40324). A test stores its own
// server's address, so servers of tests running in parallel keep the
// stage.
var RefuseSplitLargeEvent sync.Map
