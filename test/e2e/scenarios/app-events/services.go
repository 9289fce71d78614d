package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"

	"github.com/changehook/changehook/test/e2e/scenarios/internal/scenarioutil"
)

// mailer is the welcome-email service: one email per registered user.
type mailer struct {
	out  io.Writer
	sent scenarioutil.Log[string] // "to <email>: Welcome, <name>!"
}

func (m *mailer) handle(_ context.Context, d scenarioutil.Delivery) error {
	var p struct {
		To   string `json:"to"`
		Name string `json:"name"`
	}
	if err := json.Unmarshal(d.Body, &p); err != nil || p.To == "" {
		return &scenarioutil.HTTPError{Status: 400, Message: "want {to, name}"}
	}
	mail := fmt.Sprintf("to %s: Welcome, %s!", p.To, p.Name)
	m.sent.Append(mail)
	fmt.Fprintf(m.out, "  [welcome-email]  %s\n", mail)
	return nil
}

// notifier is the order-notification service.
type notifier struct {
	out  io.Writer
	sent scenarioutil.Log[string] // "order <id> is now <status>"
}

func (n *notifier) handle(_ context.Context, d scenarioutil.Delivery) error {
	var p struct {
		Order  string `json:"order"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal(d.Body, &p); err != nil || p.Order == "" {
		return &scenarioutil.HTTPError{Status: 400, Message: "want {order, status}"}
	}
	msg := fmt.Sprintf("order %s is now %s", p.Order, p.Status)
	n.sent.Append(msg)
	fmt.Fprintf(n.out, "  [notification]   %s\n", msg)
	return nil
}

// cache is the read-through cache of the application; the invalidation
// service evicts the entry of every changed document.
type cache struct {
	out     io.Writer
	mu      sync.Mutex
	entries map[string]bool
	evicted scenarioutil.Log[string] // "<operation> <key>"
}

func newCache(out io.Writer, warm []string) *cache {
	c := &cache{out: out, entries: map[string]bool{}}
	for _, k := range warm {
		c.entries[k] = true
	}
	return c
}

func (c *cache) handle(_ context.Context, d scenarioutil.Delivery) error {
	var p struct {
		Key       string `json:"key"`
		Operation string `json:"operation"`
	}
	if err := json.Unmarshal(d.Body, &p); err != nil || p.Key == "" {
		return &scenarioutil.HTTPError{Status: 400, Message: "want {key, operation}"}
	}
	c.mu.Lock()
	was := c.entries[p.Key]
	delete(c.entries, p.Key)
	c.mu.Unlock()
	state := "not cached"
	if was {
		state = "evicted"
	}
	c.evicted.Append(p.Operation + " " + p.Key)
	fmt.Fprintf(c.out, "  [cache]          %-7s %-14s %s\n", p.Operation, p.Key, state)
	return nil
}

// cached returns the keys still cached.
func (c *cache) cached() map[string]bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]bool, len(c.entries))
	for k := range c.entries {
		out[k] = true
	}
	return out
}

// eventStore is the event-sourcing service: an append-only log holding
// each change event once. It de-duplicates on webhook-id, which changehook
// keeps identical across retries and redeliveries. To show why that
// matters, it "loses" the acknowledgement of every lostAckEvery-th new
// event: the event is stored, but the answer is 503 as if the service had
// crashed before replying, so changehook delivers it again.
type eventStore struct {
	out          io.Writer
	lostAckEvery int

	mu         sync.Mutex
	seen       map[string]bool
	stored     scenarioutil.Log[storedEvent]
	requests   scenarioutil.Log[string] // the webhook-id of every request handled
	duplicates int
	lostAcks   int
}

// storedEvent is one entry of the event log.
type storedEvent struct {
	ID    string // webhook-id
	Op    string // operationType
	Event json.RawMessage
}

func newEventStore(out io.Writer, lostAckEvery int) *eventStore {
	return &eventStore{out: out, lostAckEvery: lostAckEvery, seen: map[string]bool{}}
}

func (s *eventStore) handle(_ context.Context, d scenarioutil.Delivery) error {
	var ev struct {
		OperationType string `json:"operationType"`
	}
	if err := json.Unmarshal(d.Body, &ev); err != nil || d.ID == "" {
		return &scenarioutil.HTTPError{Status: 400, Message: "want a change event with a webhook-id"}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.requests.Append(d.ID)
	if s.seen[d.ID] {
		s.duplicates++
		fmt.Fprintf(s.out, "  [event-store]    %s already stored: duplicate ignored\n", d.ID)
		return nil
	}
	s.seen[d.ID] = true
	s.stored.Append(storedEvent{ID: d.ID, Op: ev.OperationType, Event: json.RawMessage(d.Body)})
	n := s.stored.Len()
	fmt.Fprintf(s.out, "  [event-store]    #%d %s stored (%s)\n", n, d.ID, ev.OperationType)
	if s.lostAckEvery > 0 && n%s.lostAckEvery == 0 {
		s.lostAcks++
		fmt.Fprintf(s.out, "  [event-store]    #%d: simulated crash before acknowledging; changehook will retry\n", n)
		return &scenarioutil.HTTPError{Status: 503, Message: "stored, but the acknowledgement was lost"}
	}
	return nil
}

// counts returns the duplicates ignored and the acknowledgements lost.
func (s *eventStore) counts() (duplicates, lostAcks int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.duplicates, s.lostAcks
}
