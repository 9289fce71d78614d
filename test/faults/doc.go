// Package faults is changehook's fault-injection suite. It has no API: its
// tests run the real binaries as child processes — devdb (`changehook devdb
// --data DIR`, so that it can be SIGKILLed) and the runner (`changehook
// run`) — against a webhook endpoint in the test process, inject a fault,
// and check at the receiver that nothing was lost.
//
// Scenarios:
//
//	(a) the runner killed with SIGKILL at random (seeded) points during
//	    writes across 3 triggers (strict, per_document, none), restarted
//	    each time;
//	(b) devdb killed with SIGKILL and restarted on the same data directory
//	    mid-stream;
//	(c) the endpoint down (connection refused) for a while, then back;
//	(d) the endpoint failing 50% of requests with 500;
//	(e) a slow endpoint;
//	(f) the runner down longer than the oplog retention: the trigger fails
//	    visibly with history lost, `changehook checkpoints reset` recovers it,
//	    and a trigger without that problem keeps delivering meanwhile;
//	(g) the watched collections dropped and renamed: collection triggers
//	    deliver every event up to the drop/rename, then fail visibly
//	    (invalidate), and a database-wide trigger keeps delivering;
//	(h) cluster members (Linux; see cluster_test.go);
//	(i) devdb's data directory damaged: copies of the real data file
//	    (bytes flipped, truncated, a page zeroed) are refused at once with
//	    exit 1 and the "damaged … move it away or restore a backup" error, a
//	    directory in use names its holder's pid, and the documented recovery
//	    (move the directory away, start afresh) delivers again.
//
// Each scenario reports, per trigger: writes, matching events, delivered
// (distinct events acknowledged with a 2xx), duplicates (further 2xx
// deliveries of an event), lost (must be 0) and order violations (first
// deliveries out of stream order; must be 0 for strict and, per document,
// for per_document).
//
// By default each scenario runs at a reduced size (seconds, for CI). The
// full size runs with
//
//	CHANGEHOOK_LONG=1 go test ./test/faults/ -timeout 60m
//	go test ./test/faults/ -long -timeout 60m
//
// and -update-reliability rewrites the results table in RELIABILITY.md:
//
//	go test ./test/faults/ -long -update-reliability -timeout 60m -v
package faults
