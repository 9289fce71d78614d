// Package console is the web console served at / on the admin server:
// server-rendered pages (html/template) with a little plain JavaScript, every
// asset embedded in the binary, so it works offline.
//
//	GET /                     triggers: state, lag, events/s and deliveries/s
//	                          sparklines, in-flight, last error; the cluster's
//	                          members and the leases each holds, the
//	                          configured triggers' leases none holds, and
//	                          how many leases of other triggers are kept
//	GET /triggers/{name}      one trigger: status, counters, checkpoint and its
//	                          distance to the oldest oplog entry
//	GET /deadletters          dead letters, optionally ?trigger=NAME
//	GET /deadletters/{id}     one dead letter: event, attempts, last response
//	GET /assets/{file}        the embedded stylesheet and script (these two
//	                          names only)
//
// Every page is read-only and shows no secrets: it renders the runner's
// status, stored dead letters and cluster members, never the configuration's
// secret values.
// The rates behind the sparklines come from a bounded in-memory ring of
// counter samples per trigger (Run takes them).
package console

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/changehook/changehook/cluster"
	"github.com/changehook/changehook/internal/textcut"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets
var assetFS embed.FS

// Runner is what the console reports on; *runner.Runner implements it.
type Runner interface {
	// Status returns every trigger's status and counters, in configuration
	// order.
	Status() []runner.TriggerStatus
}

// Store reads the state database; *store.Store implements it.
type Store interface {
	// LoadCheckpoint returns the checkpoint of trigger (ok false: none).
	LoadCheckpoint(ctx context.Context, trigger string) (store.Checkpoint, bool, error)
	// ListDeadLetters returns the dead letters matching f, by trigger, then
	// oldest first.
	ListDeadLetters(ctx context.Context, f store.DeadLetterFilter) ([]store.StoredDeadLetter, error)
	// GetDeadLetter returns the dead letter with id (ok false: none).
	GetDeadLetter(ctx context.Context, id string) (store.StoredDeadLetter, bool, error)
}

// History reads the delivery history; *store.Store implements it.
type History interface {
	// ListAttempts returns one page of the records matching f, newest
	// first.
	ListAttempts(ctx context.Context, f store.AttemptFilter) ([]store.AttemptRecord, string, error)
}

// Cluster reports the cluster's members and leases; *cluster.Manager
// implements it.
type Cluster interface {
	// Overview reads the live members, the leases of the configured
	// triggers and those members hold, and counts the other lease
	// documents, without reading them.
	Overview(ctx context.Context) (cluster.Overview, error)
}

// memberRow is one cluster member on the overview.
type memberRow struct {
	store.Member
	// Self marks the instance serving the console.
	Self bool
	// Owns lists the lease keys (triggers, partitions) the member holds
	// and that have not expired.
	Owns []string
	// ConfigDiffers reports a configuration hash other than this
	// instance's.
	ConfigDiffers bool
}

// clusterView is the overview's cluster section.
type clusterView struct {
	Shown    bool   // the console has the cluster
	Problem  string // why the members are not shown
	LeaseTTL string
	Members  []memberRow
	// Unowned lists the lease keys of the configured triggers that no live
	// member holds (and any lease whose holder is no longer a live member).
	Unowned []string
	// OtherLeases counts the lease documents of triggers not in this
	// configuration that no member holds (removed triggers, old
	// partitionings): kept for their epochs, not listed; OtherAtLeast says
	// the count stopped at its limit.
	OtherLeases  int64
	OtherAtLeast bool
	// Drift lists the triggers this instance does not run because its
	// definition differs from the majority's.
	Drift []string
}

// cluster reads the members and leases for the overview.
func (c *Console) cluster(ctx context.Context) clusterView {
	if c.opts.Cluster == nil {
		return clusterView{}
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	st, err := c.opts.Cluster.Overview(ctx)
	if err != nil {
		return clusterView{Shown: true, Problem: "The cluster's members could not be read: " + err.Error()}
	}
	v := clusterView{Shown: true, LeaseTTL: st.LeaseTTL, Drift: st.Drift,
		OtherLeases: st.OtherLeases, OtherAtLeast: st.OtherLeases >= cluster.OverviewCountLimit}
	owns := map[string][]string{}
	for _, l := range st.Leases {
		if l.Owner != "" && l.RemainingMS > 0 {
			owns[l.Owner] = append(owns[l.Owner], l.Key)
		}
	}
	live := map[string]bool{}
	for _, m := range st.Members {
		live[m.ID] = true
		v.Members = append(v.Members, memberRow{Member: m, Self: m.ID == st.InstanceID, Owns: owns[m.ID],
			ConfigDiffers: st.ConfigHash != "" && m.ConfigHash != st.ConfigHash})
	}
	for _, l := range st.Leases {
		if l.Owner == "" || l.RemainingMS <= 0 || !live[l.Owner] {
			v.Unowned = append(v.Unowned, l.Key)
		}
	}
	return v
}

// recentAttempts is how many history records the trigger page shows.
const recentAttempts = 20

// attemptRow is one history record on the trigger page.
type attemptRow struct {
	At                       time.Time
	Kind, WebhookID, Result  string
	Attempt, Status, Latency string
	Failed                   bool
	DocumentKey              string
}

// attemptsView is the trigger page's recent attempts section.
type attemptsView struct {
	Shown   bool   // the console has the history
	Problem string // why the records are not shown
	Rows    []attemptRow
}

// attempts reads the trigger's latest history records.
func (c *Console) attempts(ctx context.Context, name string) attemptsView {
	if c.opts.History == nil {
		return attemptsView{}
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	recs, _, err := c.opts.History.ListAttempts(ctx, store.AttemptFilter{Trigger: name, Limit: recentAttempts})
	if err != nil {
		return attemptsView{Shown: true, Problem: "The history could not be read: " + err.Error()}
	}
	v := attemptsView{Shown: true}
	for _, r := range recs {
		row := attemptRow{At: r.At, Kind: r.Kind, WebhookID: r.WebhookID, Failed: r.Failed, Attempt: "-", Status: "-", Latency: "-", DocumentKey: "-", Result: "ok"}
		if r.Attempt > 0 {
			row.Attempt, row.Latency = fmt.Sprint(r.Attempt), fmt.Sprintf("%.1f ms", r.LatencyMS)
		}
		if r.Status != 0 {
			row.Status = fmt.Sprint(r.Status)
		}
		switch {
		case r.Kind == store.KindSkipped && !r.SkippedTo.IsZero():
			row.Result = fmt.Sprintf("%s: checkpoint moved from %s to %s, changes not delivered by then left undelivered (not dead-lettered)", r.Reason, fmtTime(r.SkippedFrom), fmtTime(r.SkippedTo))
		case r.Kind == store.KindSkipped:
			row.Result = "skipped and dead-lettered"
		case r.Error != "":
			row.Result = r.Error
		case r.Reason != "":
			row.Result = r.Reason
		}
		if len(r.DocumentKey) > 0 {
			if b, err := bson.MarshalExtJSON(r.DocumentKey, false, false); err == nil {
				row.DocumentKey = string(b)
			}
		}
		row.DocumentKey += r.EventsNote()
		v.Rows = append(v.Rows, row)
	}
	return v
}

// Oplog tells how far back the watched deployment's oplog reaches.
type Oplog interface {
	// OldestEntry returns the time of the oldest oplog entry.
	OldestEntry(ctx context.Context) (time.Time, error)
}

// MongoOplog reads the oldest entry of local.oplog.rs (which needs the find
// privilege on local.oplog.rs; without it the console says the distance is
// not available).
type MongoOplog struct {
	// Client is connected to the watched deployment.
	Client *mongo.Client
}

// OldestEntry returns the wall time of the oldest entry of local.oplog.rs.
func (o MongoOplog) OldestEntry(ctx context.Context) (time.Time, error) {
	var doc struct {
		TS bson.Timestamp `bson:"ts"`
	}
	// An unsorted find on the capped oplog returns entries in natural
	// (insertion) order, oldest first.
	err := o.Client.Database("local").Collection("oplog.rs").FindOne(ctx, bson.D{},
		options.FindOne().SetProjection(bson.D{{Key: "ts", Value: 1}})).Decode(&doc)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return time.Time{}, errors.New("local.oplog.rs has no entries to read")
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("read the oldest oplog entry: %w", err)
	}
	return time.Unix(int64(doc.TS.T), 0).UTC(), nil
}

// Defaults of Options.
const (
	// DefaultSampleEvery is how often Run samples the counters.
	DefaultSampleEvery = 2 * time.Second
	// DefaultSamples is how many samples each trigger's ring keeps (with
	// DefaultSampleEvery, three minutes).
	DefaultSamples = 90
	// deadLetterPage is how many dead letters the list page shows.
	deadLetterPage = 100
	// storeTimeout bounds each state-database read of a page.
	storeTimeout = 5 * time.Second
)

// Options configure a Console.
type Options struct {
	// Runner provides the triggers' status. Required.
	Runner Runner
	// Store reads checkpoints and dead letters (nil: the pages say the
	// state database is not available).
	Store Store
	// Oplog gives the oldest oplog entry (nil: not shown).
	Oplog Oplog
	// History reads the delivery history for the trigger page's recent
	// attempts (nil: not shown).
	History History
	// Cluster reads the cluster's members and leases for the overview
	// (nil: not a cluster member; not shown).
	Cluster Cluster
	// SampleEvery is the sampling interval of Run (0: DefaultSampleEvery).
	SampleEvery time.Duration
	// Samples is the ring size per trigger (0: DefaultSamples).
	Samples int
	// Controls shows pause and resume buttons; set it when the admin server
	// serves POST /api/triggers/{name}/pause and /resume, which the buttons
	// call with the admin token as a bearer header.
	Controls bool
	// DeadLetterControls shows the dead-letter replay and purge buttons; set
	// it when the admin server serves POST /api/deadletters/replay and
	// /purge, which the buttons call with the admin token as a bearer
	// header.
	DeadLetterControls bool
	// CPU returns the CPU time the process has used so far; Run samples it
	// with the triggers' counters, and the pages show the CPUs the process
	// kept busy over the samples against CPUs (nil: not shown).
	CPU func() time.Duration
	// CPUs is how many CPUs the process may use (0: runtime.GOMAXPROCS(0),
	// which follows a container's CPU limit).
	CPUs int
	// Now returns the current time (nil: time.Now).
	Now func() time.Time
	// Logger receives rendering errors (nil: discarded).
	Logger *slog.Logger
}

// Console serves the web console. Create it with New.
type Console struct {
	opts    Options
	samples *sampler
	pages   map[string]*template.Template
	mux     *http.ServeMux
	// assetPatterns are the mux's routes of the embedded assets.
	assetPatterns map[string]bool
}

// New returns a Console for opts. It starts nothing; call Run to sample the
// counters for the sparklines.
func New(opts Options) (*Console, error) {
	if opts.Runner == nil {
		return nil, errors.New("new console: nil runner")
	}
	if opts.SampleEvery <= 0 {
		opts.SampleEvery = DefaultSampleEvery
	}
	if opts.Samples <= 1 {
		opts.Samples = DefaultSamples
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.CPUs <= 0 {
		opts.CPUs = runtime.GOMAXPROCS(0)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Console{opts: opts, samples: newSampler(opts.Samples), pages: map[string]*template.Template{}}
	for _, page := range []string{"overview", "trigger", "deadletters", "deadletter", "notfound"} {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+page+".html")
		if err != nil {
			return nil, fmt.Errorf("new console: parse %s template: %w", page, err)
		}
		c.pages[page] = t
	}
	assets, err := fs.Sub(assetFS, "assets")
	if err != nil {
		return nil, fmt.Errorf("new console: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", c.overview)
	mux.HandleFunc("GET /triggers/{name}", c.trigger)
	mux.HandleFunc("GET /deadletters", c.deadLetters)
	mux.HandleFunc("GET /deadletters/{id}", c.deadLetter)
	// One route per embedded file, by its exact name: /assets/, a
	// directory or any other name (an escaped "..%2F" included) is the
	// catch-all's 404, never a listing.
	files, err := fs.ReadDir(assets, ".")
	if err != nil {
		return nil, fmt.Errorf("new console: list assets: %w", err)
	}
	c.assetPatterns = make(map[string]bool, len(files))
	for _, f := range files {
		if !f.Type().IsRegular() {
			continue
		}
		name, pattern := f.Name(), "GET /assets/"+f.Name()
		c.assetPatterns[pattern] = true
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) { http.ServeFileFS(w, r, assets, name) })
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		c.render(w, r, http.StatusNotFound, "notfound", page{Title: "Not found", Message: "There is no page at " + textcut.Quote(r.URL.Path) + "."})
	})
	c.mux = mux
	return c, nil
}

// ServeHTTP serves the console's pages and assets; other paths get a 404
// page.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) { c.mux.ServeHTTP(w, r) }

// ServesAsset reports whether ServeHTTP would serve r one of the embedded
// assets (the stylesheet and script: no data), each routed by its exact
// name. It decides as ServeHTTP routes, from the escaped path, so that an
// escaped slash or dot cannot make a page or a directory look like an
// asset.
func (c *Console) ServesAsset(r *http.Request) bool {
	_, pattern := c.mux.Handler(r)
	return c.assetPatterns[pattern]
}

// Run samples every trigger's counters every SampleEvery until ctx is
// canceled.
func (c *Console) Run(ctx context.Context) {
	c.Sample()
	t := time.NewTicker(c.opts.SampleEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.Sample()
		}
	}
}

// Sample records one sample of every trigger's counters now, and of the
// process's CPU time when Options.CPU is set.
func (c *Console) Sample() {
	now := c.opts.Now()
	if c.opts.CPU != nil {
		c.samples.recordCPU(now, c.opts.CPU())
	}
	c.samples.record(now, c.opts.Runner.Status())
}

// cpuUse is the process's CPU use over the samples (nil: not measured, or
// not enough samples yet).
func (c *Console) cpuUse() *CPUUse {
	if c.opts.CPU == nil {
		return nil
	}
	if u, ok := c.samples.cpuUse(c.opts.CPUs); ok {
		return &u
	}
	return nil
}

// page is the data every template gets.
type page struct {
	Title    string
	Nav      string // which navigation entry is current
	Message  string // notfound's text
	Refresh  bool   // the page refreshes its live region
	Controls bool   // pause/resume buttons and the token dialog are shown
	// DeadLetterControls: replay/purge buttons and the token dialog are shown
	DeadLetterControls bool
	Now                time.Time
	Data               any
}

// render executes the named page into a buffer first, so a template error
// becomes a 500 instead of half a page.
func (c *Console) render(w http.ResponseWriter, _ *http.Request, code int, name string, p page) {
	p.Now = c.opts.Now()
	p.Controls = c.opts.Controls
	p.DeadLetterControls = c.opts.DeadLetterControls
	var buf bytes.Buffer
	if err := c.pages[name].Execute(&buf, p); err != nil {
		c.opts.Logger.Error("render console page", "page", name, "error", err)
		http.Error(w, "the console could not render this page; see the logs", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

// triggerRow is one trigger on the overview and trigger pages.
type triggerRow struct {
	runner.TriggerStatus
	EventsRate, DeliveriesRate Sparkline
	Delivered                  uint64
	// Shares is what the watch loop waited for over the samples (nil:
	// not enough of them yet).
	Shares *WaitShares
}

func (c *Console) rows() []triggerRow {
	sts := c.opts.Runner.Status()
	rows := make([]triggerRow, len(sts))
	for i, st := range sts {
		ev, dl := c.samples.rates(st.Name)
		rows[i] = triggerRow{TriggerStatus: st,
			EventsRate:     sparkline("events received per second", ev),
			DeliveriesRate: sparkline("deliveries finished per second", dl),
			Delivered:      st.Deliveries["delivered"]}
		if ws, ok := c.samples.waitShares(st.Name); ok {
			rows[i].Shares = &ws
		}
	}
	return rows
}

func (c *Console) overview(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, http.StatusOK, "overview", page{Title: "Triggers", Nav: "triggers", Refresh: true, Data: struct {
		Rows    []triggerRow
		Cluster clusterView
		CPU     *CPUUse
	}{c.rows(), c.cluster(r.Context()), c.cpuUse()}})
}

// checkpointView is one checkpoint of the trigger page's checkpoint
// section: the trigger's, or one partition's of a partitioned trigger.
type checkpointView struct {
	Key         string // the partition's key, "NAME/p<i>of<N>" ("": the trigger's own)
	Available   bool   // a checkpoint was read
	Problem     string // why it is not shown ("" when Available or none saved)
	Saved       time.Time
	ClusterTime time.Time     // zero: unknown
	FromToken   bool          // ClusterTime is the resume token's: the checkpoint recorded none
	Lag         time.Duration // of the events read and not saved yet
	Oplog       string        // the oplog distance sentence
}

func (c *Console) trigger(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var row *triggerRow
	for _, x := range c.rows() {
		if x.Name == name {
			row = &x
			break
		}
	}
	if row == nil {
		c.render(w, r, http.StatusNotFound, "notfound", page{Title: "Not found", Message: "There is no trigger named " + textcut.Quote(name) + " in the running configuration."})
		return
	}
	c.render(w, r, http.StatusOK, "trigger", page{Title: "Trigger " + name, Nav: "triggers", Refresh: true,
		Data: struct {
			Row         triggerRow
			Checkpoints []checkpointView
			Attempts    attemptsView
			CPU         *CPUUse
		}{*row, c.checkpoints(r.Context(), row.TriggerStatus), c.attempts(r.Context(), name), c.cpuUse()}})
}

// checkpoints returns the checkpoint of the trigger st, or for a
// partitioned trigger one per partition (each saves its own, under its
// key), in partition order.
func (c *Console) checkpoints(ctx context.Context, st runner.TriggerStatus) []checkpointView {
	if c.opts.Store == nil {
		return []checkpointView{{Problem: "The state database is not available to the console."}}
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	if len(st.Partitions) == 0 {
		return []checkpointView{c.checkpoint(ctx, checkpointView{Lag: st.CheckpointLag}, st.Name, oldestOnce(ctx, c.opts.Oplog))}
	}
	oldest := oldestOnce(ctx, c.opts.Oplog)
	views := make([]checkpointView, len(st.Partitions))
	for i, p := range st.Partitions {
		views[i] = c.checkpoint(ctx, checkpointView{Key: p.Key, Lag: p.CheckpointLag}, p.Key, oldest)
	}
	return views
}

// oldestOnce returns a function reading the oplog's oldest entry from o on
// its first call only (nil o: the function is nil).
func oldestOnce(ctx context.Context, o Oplog) func() (time.Time, error) {
	if o == nil {
		return nil
	}
	var (
		read   bool
		oldest time.Time
		err    error
	)
	return func() (time.Time, error) {
		if !read {
			read = true
			oldest, err = o.OldestEntry(ctx)
		}
		return oldest, err
	}
}

// checkpoint fills v with the checkpoint saved under key, and its distance
// to the oplog's oldest entry (from oldest; nil: not known).
func (c *Console) checkpoint(ctx context.Context, v checkpointView, key string, oldest func() (time.Time, error)) checkpointView {
	cp, ok, err := c.opts.Store.LoadCheckpoint(ctx, key)
	switch {
	case err != nil:
		v.Problem = "The checkpoint could not be read: " + err.Error()
		return v
	case !ok:
		v.Problem = "No checkpoint saved yet: the trigger starts at its start_at position."
		if v.Key != "" {
			v.Problem = "No checkpoint saved yet: the partition starts at the trigger's start_at position."
		}
		return v
	}
	v.Available, v.Saved = true, cp.UpdatedAt
	if cp.ClusterTime.T != 0 {
		v.ClusterTime = time.Unix(int64(cp.ClusterTime.T), 0).UTC()
	} else if at, ok := runner.TokenTime(cp.Token); ok {
		// A checkpoint written by a reset or resume --from now (or by an
		// earlier version at an idle save) records no cluster time: its
		// resume token says where it stands.
		v.ClusterTime, v.FromToken = at, true
	}
	switch {
	case oldest == nil:
		v.Oplog = "The oplog's oldest entry is not known to the console."
	case v.ClusterTime.IsZero():
		v.Oplog = "The checkpoint's cluster time is not known yet, so its distance to the oldest oplog entry is not either."
	default:
		oldest, err := oldest()
		switch d := v.ClusterTime.Sub(oldest); {
		case err != nil:
			v.Oplog = "The oldest oplog entry is not available (" + err.Error() + ")."
		case d < 0:
			v.Oplog = fmt.Sprintf("The checkpoint is %s older than the oldest oplog entry (%s): its history is lost.", roundDur(-d), fmtTime(oldest))
		default:
			whose := "trigger's"
			if v.Key != "" {
				whose = "partition's"
			}
			v.Oplog = fmt.Sprintf("%s ahead of the oldest oplog entry (%s): the oplog can roll over that much before this %s history is lost.",
				roundDur(d), fmtTime(oldest), whose)
		}
	}
	return v
}

func (c *Console) deadLetters(w http.ResponseWriter, r *http.Request) {
	trigger := r.URL.Query().Get("trigger")
	data := struct {
		// Trigger selects the dead letters (and the option and buttons
		// of that trigger); Shown is it as the page names it: a real
		// trigger's name whole, anything longer than textcut.QuoteLimit
		// (only a client's input can be) quoted as textcut.Quote cuts it.
		Trigger, Shown string
		Triggers       []string
		Problem        string
		Letters        []store.StoredDeadLetter
		More           bool
		PageLimit      int
	}{Trigger: trigger, Shown: trigger, PageLimit: deadLetterPage}
	if len(trigger) > textcut.QuoteLimit {
		data.Shown = textcut.Quote(trigger)
	}
	for _, st := range c.opts.Runner.Status() {
		data.Triggers = append(data.Triggers, st.Name)
	}
	if c.opts.Store == nil {
		data.Problem = "The state database is not available to the console."
	} else {
		ctx, cancel := context.WithTimeout(r.Context(), storeTimeout)
		defer cancel()
		dls, err := c.opts.Store.ListDeadLetters(ctx, store.DeadLetterFilter{Trigger: trigger, Limit: deadLetterPage + 1, Summary: true})
		if err != nil {
			data.Problem = "The dead letters could not be read: " + err.Error()
		}
		if len(dls) > deadLetterPage {
			dls, data.More = dls[:deadLetterPage], true
		}
		data.Letters = dls
	}
	c.render(w, r, http.StatusOK, "deadletters", page{Title: "Dead letters", Nav: "deadletters", Data: data})
}

func (c *Console) deadLetter(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if c.opts.Store == nil {
		c.render(w, r, http.StatusServiceUnavailable, "notfound", page{Title: "Not available", Nav: "deadletters", Message: "The state database is not available to the console."})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), storeTimeout)
	defer cancel()
	dl, ok, err := c.opts.Store.GetDeadLetter(ctx, id)
	switch {
	case err != nil:
		c.render(w, r, http.StatusInternalServerError, "notfound", page{Title: "Not available", Nav: "deadletters", Message: "The dead letter could not be read: " + err.Error()})
		return
	case !ok:
		c.render(w, r, http.StatusNotFound, "notfound", page{Title: "Not found", Nav: "deadletters", Message: "There is no dead letter " + textcut.Quote(id) + " (replayed or purged?)."})
		return
	}
	event := "(not decodable)"
	if b, err := bson.MarshalExtJSONIndent(dl.Event, false, false, "", "  "); err == nil {
		event = string(b)
	}
	c.render(w, r, http.StatusOK, "deadletter", page{Title: "Dead letter " + id, Nav: "deadletters",
		Data: struct {
			store.StoredDeadLetter
			EventJSON string
		}{dl, event}})
}

var funcs = template.FuncMap{
	"time": fmtTime,
	"ago": func(now, t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return roundDur(now.Sub(t)) + " ago"
	},
	"dur":    roundDur,
	"rate":   formatRate,
	"pct":    func(f float64) string { return fmt.Sprintf("%.0f%%", 100*f) },
	"lower":  strings.ToLower,
	"sparkW": func() int { return sparkWidth },
	"sparkH": func() int { return sparkHeight },
	"ms":     func(ms int64) string { return roundDur(time.Duration(ms) * time.Millisecond) },
	// leaseTrigger is the trigger of a lease key: the key itself, or NAME
	// of a partition's NAME/p<i>of<N>.
	"leaseTrigger": func(key string) string {
		if i := strings.LastIndex(key, "/p"); i > 0 && strings.Contains(key[i:], "of") {
			return key[:i]
		}
		return key
	},
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

// roundDur prints d rounded to a readable precision.
func roundDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	default:
		return d.Round(time.Minute).String()
	}
}
