package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/changehook/changehook/internal/childproc"
)

// rate is events per second over the span from the first to the last
// event: the steady drain rate, free of connection and start-up time.
func rate(n int, first, last time.Duration) float64 {
	if n < 2 || last <= first {
		return 0
	}
	return float64(n-1) / (last - first).Seconds()
}

// baselineStream is baseline (a): one Go driver change stream reading a
// backlog of n insert events from coll, starting at op, with no delivery.
func baselineStream(ctx context.Context, uri, db, coll string, n int, op bson.Timestamp, c *clock) (float64, error) {
	client, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		return 0, fmt.Errorf("baseline stream: %w", err)
	}
	defer func() { _ = client.Disconnect(context.WithoutCancel(ctx)) }()
	cs, err := client.Database(db).Collection(coll).Watch(ctx, mongo.Pipeline{},
		options.ChangeStream().SetStartAtOperationTime(&op))
	if err != nil {
		return 0, fmt.Errorf("baseline stream: open: %w", err)
	}
	defer func() { _ = cs.Close(context.WithoutCancel(ctx)) }()
	var first, last time.Duration
	for i := range n {
		if !cs.Next(ctx) {
			err := cs.Err()
			if err == nil {
				err = errors.New("the stream ended without an error")
			}
			return 0, fmt.Errorf("baseline stream: ended after %d of %d events: %w", i, n, err)
		}
		if i == 0 {
			first = c.now()
		}
	}
	last = c.now()
	return rate(n, first, last), nil
}

// eventBodies returns n request bodies shaped like changehook's relaxed
// Extended JSON insert events for benchDoc documents.
func eventBodies(n int) ([][]byte, error) {
	token := bytes.Repeat([]byte("8264"), 32)
	out := make([][]byte, n)
	for seq := range n {
		ev := bson.D{
			{Key: "_id", Value: bson.D{{Key: "_data", Value: string(token)}}},
			{Key: "operationType", Value: "insert"},
			{Key: "clusterTime", Value: bson.Timestamp{T: 1_700_000_000, I: uint32(seq)}},
			{Key: "wallTime", Value: bson.DateTime(1_700_000_000_000 + int64(seq))},
			{Key: "fullDocument", Value: benchDoc(seq)},
			{Key: "ns", Value: bson.D{{Key: "db", Value: "bench"}, {Key: "coll", Value: "post"}}},
			{Key: "documentKey", Value: bson.D{{Key: "_id", Value: int64(seq)}}},
		}
		b, err := bson.MarshalExtJSON(ev, false, false)
		if err != nil {
			return nil, fmt.Errorf("build event bodies: %w", err)
		}
		out[seq] = b
	}
	return out, nil
}

// baselinePost is baseline (b): a Go client POSTs every body to url with
// `workers` requests in flight, keep-alive, no stream. It returns requests
// per second over the whole run.
func baselinePost(ctx context.Context, url string, bodies [][]byte, workers int) (float64, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: workers, MaxConnsPerHost: workers}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	jobs := make(chan []byte)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for body := range jobs {
				if err := post(ctx, client, url, body); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	var err error
feed:
	for _, b := range bodies {
		select {
		case jobs <- b:
		case err = <-errs:
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	close(errs)
	if err == nil {
		err = <-errs
	}
	if err != nil {
		return 0, fmt.Errorf("baseline post: %w", err)
	}
	return float64(len(bodies)) / time.Since(start).Seconds(), nil
}

func post(ctx context.Context, client *http.Client, url string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody))
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("POST %s: status %d", url, resp.StatusCode)
	}
	return nil
}

// nodeScript is baseline (c), what a user would write by hand with the
// official driver: watch() the collection and POST each change with fetch,
// awaiting each one (so deliveries are ordered).
const nodeScript = `'use strict';
const { MongoClient, Timestamp } = require('mongodb');
const [uri, db, coll, url, startT] = process.argv.slice(2);
(async () => {
  const client = new MongoClient(uri);
  await client.connect();
  const cs = client.db(db).collection(coll).watch([], {
    startAtOperationTime: new Timestamp({ t: Number(startT), i: 0 }),
  });
  await cs.hasNext(); // the aggregate is sent lazily: open it now
  process.stdout.write('ready\n');
  for await (const change of cs) {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(change),
    });
    await res.arrayBuffer();
    if (!res.ok) throw new Error('POST failed: ' + res.status);
  }
})().catch((err) => { console.error(err); process.exit(1); });
`

// nodeDriverVersion is the npm version range of the official driver the
// Node baseline installs.
const nodeDriverVersion = "mongodb@6"

// prepareNode installs the official mongodb npm package into a cache
// directory (once) and writes the baseline script there. It returns the
// script's path, or an error saying why the baseline cannot run.
func prepareNode(ctx context.Context, cacheDir string) (string, error) {
	if _, err := exec.LookPath("node"); err != nil {
		return "", errors.New("node is not installed")
	}
	if _, err := exec.LookPath("npm"); err != nil {
		return "", errors.New("npm is not installed")
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", fmt.Errorf("prepare node baseline: %w", err)
	}
	if _, err := os.Stat(filepath.Join(cacheDir, "node_modules", "mongodb", "package.json")); err != nil {
		if err := os.WriteFile(filepath.Join(cacheDir, "package.json"), []byte(`{"name":"changehook-bench-node","private":true}`+"\n"), 0o644); err != nil {
			return "", fmt.Errorf("prepare node baseline: %w", err)
		}
		cmd := exec.CommandContext(ctx, "npm", "install", "--no-audit", "--no-fund", "--loglevel=error", nodeDriverVersion)
		cmd.Dir = cacheDir
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("prepare node baseline: npm install %s: %w\n%s", nodeDriverVersion, err, out)
		}
	}
	script := filepath.Join(cacheDir, "watch-and-post.js")
	if err := os.WriteFile(script, []byte(nodeScript), 0o644); err != nil {
		return "", fmt.Errorf("prepare node baseline: %w", err)
	}
	return script, nil
}

// baselineNode is baseline (c): the Node script drains a backlog of
// rec.want insert events from coll starting at op, POSTing each to rec.
// The rate is measured at the receiver, as for changehook.
func baselineNode(ctx context.Context, script, uri, db, coll string, op bson.Timestamp, rec *receiver, timeout time.Duration) (float64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", script, uri, db, coll, rec.url(), strconv.FormatUint(uint64(op.T), 10))
	cmd.Dir = filepath.Dir(script)
	stderr := &childproc.TailBuffer{Max: 16 << 10}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, fmt.Errorf("baseline node: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("baseline node: %w", err)
	}
	exited := make(chan error, 1)
	go func() {
		_, _ = io.Copy(io.Discard, bufio.NewReader(stdout))
		exited <- cmd.Wait()
	}()
	waitErr := make(chan error, 1)
	go func() { waitErr <- rec.wait(ctx, timeout) }()
	select {
	case err := <-waitErr:
		cancel()
		<-exited
		if err != nil {
			return 0, fmt.Errorf("baseline node: %w\n%s", err, stderr)
		}
	case err := <-exited:
		return 0, fmt.Errorf("baseline node: script exited early (%v):\n%s", err, stderr)
	}
	first, last, err := rec.span()
	if err != nil {
		return 0, fmt.Errorf("baseline node: %w", err)
	}
	return rate(int(rec.want), first, last), nil
}
