package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// endpoint is the webhook receiver: an HTTP server on a fixed address that
// can be taken down (connection refused) and brought back, fail a share of
// requests with 500, or answer slowly. Every 2xx delivery is recorded.
type endpoint struct {
	addr string
	rec  *recorder

	mu       sync.Mutex
	srv      *http.Server
	failRate float64    // share of requests answered 500
	rng      *rand.Rand // decides which requests fail (seeded)
	delay    time.Duration

	// peer, when set before up, names the process that opened each
	// connection (the cluster scenarios' sender attribution); its result
	// is recorded with every delivery of that connection.
	peer func(net.Conn) sender
}

// peerKey is the request context key of the connection's *peerLookup.
type peerKey struct{}

// peerLookup is the attribution of one accepted connection (see
// endpoint.peer). It runs on its own goroutine from the moment the
// connection is accepted: run in the accept loop (http.Server.ConnContext),
// each lookup — a read of /proc/net/tcp and of every member's descriptors,
// 9 ms median and up to 100 ms on a loaded machine — delayed the accepting
// of every connection behind it, so a burst of new connections (a new
// owner opening its pool) postponed the arrival time recorded for requests
// on the later ones by hundreds of milliseconds, enough to misplace them
// among two members' deliveries.
type peerLookup struct {
	done chan struct{}
	from sender // valid once done is closed
}

// sender is the process that sent a delivery, as the endpoint attributed
// its connection: pid 0 when it could not, and then why says what the
// lookup found, so that an unattributed delivery the audit rejects can be
// told apart (a connection closed before the lookup, a process that is
// not a member).
type sender struct {
	pid int
	why string
}

// wait returns the lookup's result.
func (l *peerLookup) wait() sender {
	<-l.done
	return l.from
}

func newEndpoint(t *testing.T, seed uint64) *endpoint {
	t.Helper()
	e := &endpoint{addr: freeAddr(t), rec: newRecorder(), rng: rand.New(rand.NewPCG(seed, 0x5eed))}
	if err := e.up(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.down)
	return e
}

// url is the URL of trigger name's hook.
func (e *endpoint) url(name string) string { return "http://" + e.addr + "/hook/" + name }

// up starts serving on the endpoint's address.
func (e *endpoint) up() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.srv != nil {
		return nil
	}
	ln, err := net.Listen("tcp", e.addr)
	if err != nil {
		return fmt.Errorf("endpoint up: %w", err)
	}
	e.srv = &http.Server{Handler: e, ReadHeaderTimeout: 10 * time.Second}
	if e.peer != nil {
		peer := e.peer
		e.srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
			l := &peerLookup{done: make(chan struct{})}
			go func() {
				l.from = peer(c)
				close(l.done)
			}()
			return context.WithValue(ctx, peerKey{}, l)
		}
	}
	go func(srv *http.Server) { _ = srv.Serve(ln) }(e.srv)
	return nil
}

// down closes the listener and every connection: requests now fail with
// connection refused.
func (e *endpoint) down() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.srv != nil {
		_ = e.srv.Close()
		e.srv = nil
	}
}

// set changes how requests are answered from now on.
func (e *endpoint) set(failRate float64, delay time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.failRate, e.delay = failRate, delay
}

func (e *endpoint) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	at := time.Now()
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	if err != nil {
		http.Error(w, "read body", http.StatusBadRequest)
		return
	}
	e.mu.Lock()
	fail := e.failRate > 0 && e.rng.Float64() < e.failRate
	delay := e.delay
	e.mu.Unlock()
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-req.Context().Done():
			t.Stop()
			return
		}
	}
	if fail {
		e.rec.reject()
		http.Error(w, "injected failure", http.StatusInternalServerError)
		return
	}
	trigger := req.Header.Get("X-Changehook-Trigger")
	if trigger == "" {
		trigger = strings.TrimPrefix(req.URL.Path, "/hook/")
	}
	var from sender
	if l, ok := req.Context().Value(peerKey{}).(*peerLookup); ok {
		from = l.wait() // at was taken on arrival, before waiting
	}
	if err := e.rec.record(trigger, body, from, at); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// recorder keeps every 2xx delivery: how often each event arrived and, per
// trigger, the order of first arrivals.
type recorder struct {
	mu       sync.Mutex
	counts   map[string]int      // event identity → 2xx deliveries
	first    map[string][]string // trigger → identities in first-arrival order
	total    int                 // 2xx deliveries of events, all triggers
	rejected int                 // requests answered 500 on purpose
	bad      []string            // bodies that could not be identified
	notify   chan struct{}       // signalled (non-blocking) on every delivery
	keepLog  bool                // record every delivery in log (cluster scenarios)
	log      []delivery
}

// delivery is one 2xx delivery as the receiver saw it.
type delivery struct {
	trigger string
	id      string    // event identity
	pid     int       // sending process (0: unknown)
	why     string    // when pid is 0: what the attribution found (sender.why)
	at      time.Time // arrival of the request
	ct      uint64    // the event's clusterTime, t<<32 | i
}

func newRecorder() *recorder {
	return &recorder{counts: map[string]int{}, first: map[string][]string{}, notify: make(chan struct{}, 1)}
}

func (r *recorder) reject() {
	r.mu.Lock()
	r.rejected++
	r.mu.Unlock()
}

// record identifies the event in body — or each event of a batch, a JSON
// array, in its order — sent by from and arrived at at, and counts it.
func (r *recorder) record(trigger string, body []byte, from sender, at time.Time) error {
	if bytes.HasPrefix(body, []byte("[")) {
		var elems []json.RawMessage
		if err := json.Unmarshal(body, &elems); err != nil || len(elems) == 0 {
			r.mu.Lock()
			defer r.mu.Unlock()
			if len(r.bad) < 10 {
				r.bad = append(r.bad, fmt.Sprintf("batch body is not a non-empty JSON array: %v", err))
			}
			return fmt.Errorf("identify batch: %v", err)
		}
		for _, e := range elems {
			if err := r.record(trigger, e, from, at); err != nil {
				return err
			}
		}
		return nil
	}
	id, err := eventIdentity(trigger, body)
	var ct uint64
	if err == nil && r.keepLog {
		ct, err = eventClusterTime(body)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		if len(r.bad) < 10 {
			r.bad = append(r.bad, err.Error())
		}
		return err
	}
	r.counts[id]++
	r.total++
	if r.keepLog {
		r.log = append(r.log, delivery{trigger: trigger, id: id, pid: from.pid, why: from.why, at: at, ct: ct})
	}
	if r.counts[id] == 1 {
		r.first[trigger] = append(r.first[trigger], id)
	}
	select {
	case r.notify <- struct{}{}:
	default:
	}
	return nil
}

// delivered returns the number of 2xx event deliveries so far (batches
// count their events), duplicates included.
func (r *recorder) delivered() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.total
}

// snapshot returns copies of the counts and of trigger's first-arrival order.
func (r *recorder) snapshot(trigger string) (map[string]int, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	counts := make(map[string]int, len(r.counts))
	for k, v := range r.counts {
		if strings.HasPrefix(k, trigger+"|") {
			counts[k] = v
		}
	}
	return counts, append([]string(nil), r.first[trigger]...)
}

// wireEvent is the part of a delivered change event (relaxed Extended
// JSON) that identifies it.
type wireEvent struct {
	OperationType string `json:"operationType"`
	NS            struct {
		DB   string `json:"db"`
		Coll string `json:"coll"`
	} `json:"ns"`
	DocumentKey struct {
		ID string `json:"_id"`
	} `json:"documentKey"`
	FullDocument *struct {
		V *int64 `json:"v"`
	} `json:"fullDocument"`
	UpdateDescription *struct {
		UpdatedFields struct {
			V *int64 `json:"v"`
		} `json:"updatedFields"`
	} `json:"updateDescription"`
}

// eventIdentity names a delivered event the way the workload names the
// write that caused it: trigger|db.coll|key|version for document events,
// trigger|db.coll|operationType for collection events (drop, rename).
func eventIdentity(trigger string, body []byte) (string, error) {
	var ev wireEvent
	if err := json.Unmarshal(body, &ev); err != nil {
		return "", fmt.Errorf("identify event: %w", err)
	}
	ns := ev.NS.DB + "." + ev.NS.Coll
	switch ev.OperationType {
	case "insert", "replace":
		if ev.FullDocument == nil || ev.FullDocument.V == nil {
			return "", fmt.Errorf("identify event: %s without fullDocument.v", ev.OperationType)
		}
		return docIdentity(trigger, ns, ev.DocumentKey.ID, *ev.FullDocument.V), nil
	case "update":
		if ev.UpdateDescription == nil || ev.UpdateDescription.UpdatedFields.V == nil {
			return "", errors.New("identify event: update without updatedFields.v")
		}
		return docIdentity(trigger, ns, ev.DocumentKey.ID, *ev.UpdateDescription.UpdatedFields.V), nil
	case "drop", "rename":
		return nsIdentity(trigger, ns, ev.OperationType), nil
	default:
		return "", fmt.Errorf("identify event: unexpected operationType %q", ev.OperationType)
	}
}

// eventClusterTime returns the clusterTime of the delivered event in body
// as t<<32 | i.
func eventClusterTime(body []byte) (uint64, error) {
	var ev struct {
		ClusterTime *struct {
			TS struct {
				T uint32 `json:"t"`
				I uint32 `json:"i"`
			} `json:"$timestamp"`
		} `json:"clusterTime"`
	}
	if err := json.Unmarshal(body, &ev); err != nil {
		return 0, fmt.Errorf("event cluster time: %w", err)
	}
	if ev.ClusterTime == nil || ev.ClusterTime.TS.T == 0 {
		return 0, errors.New("event cluster time: no clusterTime in the event")
	}
	return uint64(ev.ClusterTime.TS.T)<<32 | uint64(ev.ClusterTime.TS.I), nil
}

func docIdentity(trigger, ns, key string, v int64) string {
	return fmt.Sprintf("%s|%s|%s|%d", trigger, ns, key, v)
}

func nsIdentity(trigger, ns, op string) string { return trigger + "|" + ns + "|" + op }

// expEvent is one event a trigger must deliver, in stream order.
type expEvent struct {
	id      string
	key     string // documentKey; "" for a collection event
	barrier bool   // a collection event (drop, rename)
}

// workload writes to the collections of one database and remembers, per
// trigger, every event those writes must produce.
type workload struct {
	client  *mongo.Client
	db      string
	rng     *rand.Rand
	colls   []string
	watch   map[string][]string // collection → triggers whose stream sees it
	maxKeys int
	keys    map[string][]int64 // collection → current version of each key
	keyBase map[string]int     // collection → number of its first key
	writes  map[string]int     // trigger → writes to its collections
	exp     map[string][]expEvent
}

func newWorkload(t *testing.T, uri, db string, seed uint64, maxKeys int, watch map[string][]string) *workload {
	t.Helper()
	client, err := mongo.Connect(options.Client().ApplyURI(uri).SetTimeout(0))
	if err != nil {
		t.Fatalf("connect writer: %v", err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	w := &workload{client: client, db: db, rng: rand.New(rand.NewPCG(seed, 1)), watch: watch, maxKeys: maxKeys,
		keys: map[string][]int64{}, keyBase: map[string]int{}, writes: map[string]int{}, exp: map[string][]expEvent{}}
	for c := range watch {
		w.colls = append(w.colls, c)
	}
	slices.Sort(w.colls)
	return w
}

// writeOne makes one random write to a random collection: an insert of a
// new key (while there are fewer than maxKeys, with probability 0.3, or
// when the collection is empty) or an update setting v of an existing key
// to its next version. A write that fails is retried until it is
// acknowledged, so that every write the workload records happened.
func (w *workload) writeOne(ctx context.Context) error {
	return w.writeTo(ctx, w.colls[w.rng.IntN(len(w.colls))])
}

// writeTo makes one random write to coll (see writeOne).
func (w *workload) writeTo(ctx context.Context, coll string) error {
	keys := w.keys[coll]
	c := w.client.Database(w.db).Collection(coll)
	var key string
	var v int64
	if len(keys) == 0 || (len(keys) < w.maxKeys && w.rng.Float64() < 0.3) {
		k := len(keys)
		key, v = keyName(w.keyBase[coll]+k), 0
		doc := bson.D{{Key: "_id", Value: key}, {Key: "v", Value: v}, {Key: "pad", Value: "changehook fault injection"}}
		err := retry(ctx, func(attempt int) error {
			_, err := c.InsertOne(ctx, doc)
			if attempt > 0 && mongo.IsDuplicateKeyError(err) {
				return nil // an earlier attempt was applied
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("insert %s/%s: %w", coll, key, err)
		}
		w.keys[coll] = append(keys, 0)
	} else {
		k := w.rng.IntN(len(keys))
		key, v = keyName(w.keyBase[coll]+k), keys[k]+1
		err := retry(ctx, func(int) error {
			_, err := c.UpdateOne(ctx, bson.D{{Key: "_id", Value: key}}, bson.D{{Key: "$set", Value: bson.D{{Key: "v", Value: v}}}})
			return err
		})
		if err != nil {
			return fmt.Errorf("update %s/%s: %w", coll, key, err)
		}
		keys[k] = v
	}
	ns := w.db + "." + coll
	for _, trig := range w.watch[coll] {
		w.writes[trig]++
		w.exp[trig] = append(w.exp[trig], expEvent{id: docIdentity(trig, ns, key, v), key: ns + "/" + key})
	}
	return nil
}

// expectCollectionEvent records a drop or rename of coll that every trigger
// watching it must deliver.
func (w *workload) expectCollectionEvent(coll, op string) {
	ns := w.db + "." + coll
	for _, trig := range w.watch[coll] {
		w.writes[trig]++
		w.exp[trig] = append(w.exp[trig], expEvent{id: nsIdentity(trig, ns, op), barrier: true})
	}
}

// renamed tells the workload that from was renamed to to (its documents
// moved) and that watchers now see to.
func (w *workload) renamed(from, to string, watchers []string) {
	w.keys[to], w.keyBase[to] = w.keys[from], w.keyBase[from]
	delete(w.keys, from)
	delete(w.watch, from)
	w.watch[to] = watchers
	w.colls = slices.DeleteFunc(w.colls, func(c string) bool { return c == from })
	w.colls = append(w.colls, to)
}

// recreated tells the workload that coll was dropped and is written again
// from scratch (keys numbered from base, so that no event repeats an
// identity of the old collection), seen by watchers.
func (w *workload) recreated(coll string, base int, watchers []string) {
	w.keys[coll], w.keyBase[coll] = nil, base
	w.watch[coll] = watchers
}

// retry runs op until it succeeds, backing off from 10 ms to 500 ms, or
// until ctx ends.
func retry(ctx context.Context, op func(attempt int) error) error {
	backoff := 10 * time.Millisecond
	for attempt := 0; ; attempt++ {
		err := op(attempt)
		if err == nil {
			return nil
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-t.C:
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}

func keyName(k int) string { return fmt.Sprintf("k%05d", k) }

// pacer spaces writes at a fixed rate: the i-th wait returns at start +
// i/rate (at once when behind).
type pacer struct {
	start    time.Time
	interval time.Duration
	i        int
	timer    *time.Timer
}

func newPacer(rate int) *pacer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &pacer{start: time.Now(), interval: time.Second / time.Duration(rate), timer: t}
}

func (p *pacer) wait(ctx context.Context) error {
	p.i++
	d := time.Until(p.start.Add(time.Duration(p.i) * p.interval))
	if d <= 0 {
		return ctx.Err()
	}
	p.timer.Reset(d)
	select {
	case <-p.timer.C:
		return nil
	case <-ctx.Done():
		p.timer.Stop()
		return ctx.Err()
	}
}

// tally is one trigger's outcome in one scenario.
type tally struct {
	Scenario        string
	Trigger         string
	Ordering        string
	Writes          int
	Matching        int
	Delivered       int // distinct expected events that arrived
	Duplicates      int // 2xx deliveries beyond each event's first
	Lost            int // expected events that never arrived
	Unexpected      int // distinct events that arrived but were never written
	OrderViolations int // first arrivals out of stream order (-1: not checked)
	Note            string
}

// verify compares the events a trigger must deliver (exp, in stream order)
// with what arrived: counts (identity → 2xx deliveries) and first (first
// arrivals in order). Order is checked for strict (every first arrival
// after all earlier events, collection events included) and per_document
// (per documentKey; events without a documentKey, such as drop and rename,
// carry no ordering key in changehook and are not checked); none is not
// checked.
func verify(exp []expEvent, counts map[string]int, first []string, ordering string) tally {
	t := tally{Ordering: ordering, Matching: len(exp), OrderViolations: -1}
	pos := make(map[string]int, len(exp))
	for i, e := range exp {
		pos[e.id] = i
	}
	for _, e := range exp {
		if counts[e.id] > 0 {
			t.Delivered++
		} else {
			t.Lost++
		}
	}
	for id, n := range counts {
		if _, ok := pos[id]; !ok {
			t.Unexpected++
			continue
		}
		t.Duplicates += n - 1
	}
	if ordering == "none" {
		return t
	}
	t.OrderViolations = 0
	maxAll := -1
	maxKey := map[string]int{}
	// per_document: a collection event (drop, rename) is a barrier: first
	// delivered after every earlier event, and before every later one.
	var barriers []int
	for i, e := range exp {
		if e.barrier {
			barriers = append(barriers, i)
		}
	}
	seenBarrier := map[int]bool{}
	for _, id := range first {
		p, ok := pos[id]
		if !ok {
			continue
		}
		e := exp[p]
		switch {
		case ordering == "strict":
			if p < maxAll {
				t.OrderViolations++
			}
		case e.barrier:
			if p < maxAll {
				t.OrderViolations++
			}
			seenBarrier[p] = true
		default:
			// On the wrong side of a barrier: after it in the stream but
			// delivered before it, or before it but delivered after it.
			overtook := false
			for _, b := range barriers {
				if (b < p && !seenBarrier[b]) || (b > p && seenBarrier[b]) {
					overtook = true
				}
			}
			if p < keyMax(maxKey, e.key) || overtook {
				t.OrderViolations++
			}
			maxKey[e.key] = max(keyMax(maxKey, e.key), p)
		}
		maxAll = max(maxAll, p)
	}
	return t
}

func keyMax(m map[string]int, k string) int {
	if v, ok := m[k]; ok {
		return v
	}
	return -1
}

// waitDelivered waits until every expected event of every trigger in exp
// arrived at rec, or timeout passes; it returns whether all arrived.
func waitDelivered(rec *recorder, exp map[string][]expEvent, timeout time.Duration) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		if allArrived(rec, exp) {
			return true
		}
		select {
		case <-rec.notify:
		case <-deadline.C:
			return allArrived(rec, exp)
		}
	}
}

func allArrived(rec *recorder, exp map[string][]expEvent) bool {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, evs := range exp {
		for _, e := range evs {
			if rec.counts[e.id] == 0 {
				return false
			}
		}
	}
	return true
}
