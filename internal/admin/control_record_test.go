package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/internal/devdbtest"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
)

// funcController is a Controller that answers with f.
type funcController func(ctx context.Context, name string, req store.ControlRequest) (string, error)

func (f funcController) RequestControl(ctx context.Context, name, _ string, req store.ControlRequest) (string, error) {
	return f(ctx, name, req)
}

// storeController records requests as *runner.Runner.RequestControl does:
// runner.RequestControl on its store.
type storeController struct{ st *store.Store }

func (c storeController) RequestControl(ctx context.Context, name, reason string, req store.ControlRequest) (string, error) {
	return runner.RequestControl(ctx, c.st, name, reason, req)
}

// postControl posts a pause of orders to s and returns the status and
// the body.
func postControl(t *testing.T, s *Server) (int, string) {
	t.Helper()
	res, err := http.Post(s.URL()+"/api/triggers/orders/pause", "application/json", strings.NewReader(`{"reason": "maintenance"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// TestControlAnswerSaysWhetherRecorded: 202 ("applies later") only for a
// request that was recorded (a *runner.PendingError); one that could not
// be recorded, whatever the reason, is 503 with the error: nothing will
// ever apply it, so the caller must send it again.
func TestControlAnswerSaysWhetherRecorded(t *testing.T) {
	for _, tc := range []struct {
		name     string
		c        funcController
		code     int
		contains string
	}{
		{"applied", func(context.Context, string, store.ControlRequest) (string, error) { return "paused", nil }, http.StatusOK, `"applied": true`},
		{"recorded, not applied in time", func(ctx context.Context, name string, req store.ControlRequest) (string, error) {
			<-ctx.Done()
			return "", &runner.PendingError{Kind: req.Kind, Trigger: name, Err: ctx.Err()}
		}, http.StatusAccepted, "recorded, but no running changehook applied it yet"},
		{"not recorded: the state database did not answer in time", func(ctx context.Context, name string, req store.ControlRequest) (string, error) {
			<-ctx.Done()
			return "", fmt.Errorf("%s %s: %w: %w", req.Kind, name, runner.ErrNotRecorded, ctx.Err())
		}, http.StatusServiceUnavailable, "not recorded, so nothing applies it"},
		{"not recorded: the wait ran out checking it", func(ctx context.Context, name string, req store.ControlRequest) (string, error) {
			<-ctx.Done()
			return "", fmt.Errorf("%s %s: read the oplog: %w", req.Kind, name, ctx.Err())
		}, http.StatusServiceUnavailable, "context deadline exceeded"},
		{"refused", func(_ context.Context, name string, req store.ControlRequest) (string, error) {
			return "", fmt.Errorf("%s %s: not stuck", req.Kind, name)
		}, http.StatusConflict, "not stuck"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := startServer(t, Options{Control: tc.c, WriteTimeout: 2 * time.Second}) // waits 1 s
			code, body := postControl(t, s)
			if code != tc.code || !strings.Contains(body, tc.contains) {
				t.Errorf("answer %d %s, want %d containing %q", code, body, tc.code, tc.contains)
			}
		})
	}
}

// TestControlNotRecordedIs503: a control request the state database does
// not store within the call's wait (here every update blocks 3 s, then
// fails) is answered 503, not 202 "applies later": no request is stored,
// so nothing would ever apply it.
func TestControlNotRecordedIs503(t *testing.T) {
	_, client := devdbtest.StartWith(t, devdb.Options{EnableTestCommands: true})
	ctx := context.Background()
	st := store.New(client, "chstate")
	if err := st.EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	failPoint := func(mode any, data bson.D) {
		cmd := bson.D{{Key: "configureFailPoint", Value: "failCommand"}, {Key: "mode", Value: mode}}
		if data != nil {
			cmd = append(cmd, bson.E{Key: "data", Value: data})
		}
		if err := client.Database("admin").RunCommand(ctx, cmd).Err(); err != nil {
			t.Fatal(err)
		}
	}
	failPoint("alwaysOn", bson.D{{Key: "failCommands", Value: bson.A{"update"}}, {Key: "blockConnection", Value: true},
		{Key: "blockTimeMS", Value: 3000}, {Key: "errorCode", Value: 2}})
	t.Cleanup(func() { failPoint("off", nil) })

	s := startServer(t, Options{Control: storeController{st}, WriteTimeout: 4 * time.Second}) // waits 2 s
	code, body := postControl(t, s)
	failPoint("off", nil)
	if _, found, err := st.LoadControl(ctx, "orders"); err != nil || found {
		t.Fatalf("control of orders recorded = %v (%v), want none: the fail point refuses every update", found, err)
	}
	var e struct{ Error string }
	if code != http.StatusServiceUnavailable || json.Unmarshal([]byte(body), &e) != nil || !strings.Contains(e.Error, "pause orders: not recorded") {
		t.Errorf("answer %d %s, want 503 with the error saying it was not recorded", code, body)
	}
}
