package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// benchPKI is a throwaway CA and a server certificate for 127.0.0.1: the
// HTTPS receiver serves the certificate, the runner trusts the CA through
// webhook.tls.ca_file, as a deployment with a private CA would.
type benchPKI struct {
	caFile string
	server *tls.Config
}

// newBenchPKI creates the CA and the certificate (ECDSA P-256, valid for a
// day) and writes the CA to dir/ca.pem.
func newBenchPKI(dir string) (*benchPKI, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("bench CA: %w", err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "changehook-bench CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("bench CA: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, fmt.Errorf("bench CA: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("bench server certificate: %w", err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("bench server certificate: %w", err)
	}
	p := &benchPKI{caFile: filepath.Join(dir, "ca.pem")}
	if err := os.WriteFile(p.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		return nil, fmt.Errorf("bench CA: %w", err)
	}
	p.server = &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		NextProtos:   []string{"http/1.1"},
		MinVersion:   tls.VersionTLS12,
	}
	return p, nil
}

// rateResult is the real-time rate-limit check: a backlog drained by a
// trigger with webhook.rate_limit.
type rateResult struct {
	Limit    float64
	Events   int
	Span     time.Duration // first to last receipt
	Measured float64       // (Events-1) / Span
}

// rateRun drains a backlog of limit×duration+1 events through a trigger
// limited to limit requests/s (burst 1) and measures the delivered rate
// from the first to the last receipt.
func (b *bench) rateRun(ctx context.Context) (*rateResult, error) {
	limit := b.cfg.rateLimit
	n := int(limit*b.cfg.rateDuration.Seconds()) + 1
	coll := "rate_limit"
	startAt, _, err := b.backlog(ctx, coll, n)
	if err != nil {
		return nil, err
	}
	rec, err := startReceiver(b.clock, n, 0)
	if err != nil {
		return nil, err
	}
	defer rec.close()
	p, err := b.startRunnerFor(triggerSpec{Mode: "none", Concurrency: b.cfg.concurrency, Database: benchDB,
		Collection: coll, URL: rec.url(), StartAt: startAt, RateLimit: limit})
	if err != nil {
		return nil, err
	}
	waitErr := p.waitDelivered(ctx, rec, b.cfg.timeout)
	_, _, stopErr := p.stop(stopGrace)
	if waitErr != nil {
		return nil, fmt.Errorf("rate limit run: %w\nrunner output:\n%s", waitErr, p.stderr)
	}
	if stopErr != nil {
		return nil, stopErr
	}
	first, last, err := rec.span()
	if err != nil {
		return nil, err
	}
	r := &rateResult{Limit: limit, Events: n, Span: last - first}
	if r.Span > 0 {
		r.Measured = float64(n-1) / r.Span.Seconds()
	}
	return r, nil
}
