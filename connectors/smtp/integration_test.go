//go:build integration

package smtp_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailflow/mailflow/connectors/internal/tlsconf"
	"github.com/mailflow/mailflow/connectors/smtp"
	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/engine/enginetest"
)

// withoutTrace removes from the header block the trace fields Postfix adds
// (X-Original-To, Delivered-To, Received) or replaces (Return-Path: its
// cleanup drops any that came in, and writes its own), with their folded
// lines, and converts to CRLF, so what we sent and what arrived compare.
func withoutTrace(b []byte) []byte {
	b = enginetest.CRLF([][]byte{b})[0]
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		return b
	}
	var out bytes.Buffer
	skipping := false
	for _, line := range bytes.SplitAfter(b[:end+2], []byte("\r\n")) {
		if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
			if !skipping {
				out.Write(line)
			}
			continue
		}
		name, _, _ := bytes.Cut(line, []byte(":"))
		switch strings.ToLower(string(name)) {
		case "return-path", "x-original-to", "delivered-to", "received":
			skipping = true
		default:
			skipping = false
			out.Write(line)
		}
	}
	out.Write(b[end+2:])
	return out.Bytes()
}

// sinkMessages waits until the sink Maildir holds want messages whose
// X-Test-Run is run, and returns them.
func sinkMessages(t *testing.T, dir, run string, want int) [][]byte {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		var out [][]byte
		for _, sub := range []string{"new", "cur"} {
			ents, _ := os.ReadDir(filepath.Join(dir, sub))
			for _, e := range ents {
				b, err := os.ReadFile(filepath.Join(dir, sub, e.Name()))
				if err == nil && bytes.Contains(b, []byte("X-Test-Run: "+run+"\n")) {
					out = append(out, b)
				}
			}
		}
		if len(out) >= want || time.Now().After(deadline) {
			return out
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// tagged gives each message an X-Test-Run header so that this run's mail
// can be told apart in the shared sink.
func tagged(run string, msgs [][]byte) [][]byte {
	out := make([][]byte, len(msgs))
	for i, m := range msgs {
		out[i] = append([]byte("X-Test-Run: "+run+"\r\n"), enginetest.CRLF([][]byte{m})[0]...)
	}
	return out
}

func TestPostfixThousandMessages(t *testing.T) {
	srv := enginetest.RealServers(t)
	run := fmt.Sprintf("thousand-%d", time.Now().UnixNano())
	var msgs [][]byte
	for _, m := range enginetest.Mix(1200) {
		// Postfix adds header fields of its own to a message without any;
		// the engine tests cover those.
		if !bytes.HasPrefix(m, []byte("no header")) && len(msgs) < 1000 {
			msgs = append(msgs, m)
		}
	}
	msgs = tagged(run, msgs)
	o := newOutput(t, &smtp.Output{Address: srv.SMTP, TLS: "starttls", Options: tlsOptsCA(srv.CA),
		To: []string{"sink@example.net"}, MaxConnections: 4})
	var wg sync.WaitGroup
	errs := make(chan error, len(msgs))
	sem := make(chan struct{}, 8)
	for i, m := range msgs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			res, err := o.Deliver(context.Background(), engine.NewMessage(m, engine.Source{Input: "t", ID: fmt.Sprint(i)}), engine.Delivery{})
			if err == nil && res[0].Err != nil {
				err = res[0].Err
			}
			if err != nil {
				errs <- fmt.Errorf("message %d: %w", i, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got := sinkMessages(t, srv.SinkDir, run, len(msgs))
	want := map[string]int{}
	for _, m := range msgs {
		want[enginetest.Digest(withoutTrace(m))]++
	}
	have := map[string]int{}
	for _, m := range got {
		have[enginetest.Digest(withoutTrace(m))]++
	}
	missing := 0
	for d, n := range want {
		if have[d] != n {
			missing++
		}
	}
	if missing > 0 || len(got) != len(msgs) {
		t.Fatalf("%d of %d messages did not arrive byte-identical (sink has %d)", missing, len(msgs), len(got))
	}
}

func TestPostfixSubmissionNeedsTLSAndAuth(t *testing.T) {
	srv := enginetest.RealServers(t)
	run := fmt.Sprintf("submission-%d", time.Now().UnixNano())
	msg := tagged(run, [][]byte{enginetest.Message(enginetest.UTF8Header, 1, 500)})[0]
	o := newOutput(t, &smtp.Output{Address: srv.Submission, TLS: "starttls", Options: tlsOptsCA(srv.CA),
		Username: "u1", Password: srv.Password, To: []string{"sink@example.net"}})
	if res, err := o.Deliver(context.Background(), engine.NewMessage(msg, engine.Source{}), engine.Delivery{}); err != nil || res[0].Err != nil {
		t.Fatalf("%v %v", res, err)
	}
	if got := sinkMessages(t, srv.SinkDir, run, 1); len(got) != 1 {
		t.Fatal("message did not arrive through submission")
	}
	bad := newOutput(t, &smtp.Output{Address: srv.Submission, TLS: "starttls", Options: tlsOptsCA(srv.CA),
		Username: "u1", Password: "wrong", To: []string{"sink@example.net"}})
	if _, err := bad.Deliver(context.Background(), engine.NewMessage(msg, engine.Source{}), engine.Delivery{}); err == nil || !engine.IsPermanent(err) {
		t.Fatalf("a wrong password must be permanent, got %v", err)
	}
}

func TestPostfixPerRecipientCodes(t *testing.T) {
	srv := enginetest.RealServers(t)
	o := newOutput(t, &smtp.Output{Address: srv.SMTP, TLS: "starttls", Options: tlsOptsCA(srv.CA),
		To: []string{"ok@example.net", "defer@example.net", "refuse@example.net"}})
	res, err := o.Deliver(context.Background(), engine.NewMessage(enginetest.Message(enginetest.Plain, 1, 100), engine.Source{}), engine.Delivery{})
	if err != nil || len(res) != 3 {
		t.Fatalf("%v %v", res, err)
	}
	if res[0].Err != nil || res[1].Err == nil || engine.IsPermanent(res[1].Err) || !engine.IsPermanent(res[2].Err) {
		t.Fatalf("want ok / temporary / permanent, got %+v", res)
	}
	if !strings.Contains(res[2].Err.Error(), "5.1.1") {
		t.Fatalf("the enhanced code is lost: %v", res[2].Err)
	}
}

func tlsOptsCA(ca string) tlsconf.Options { return tlsconf.Options{CAFile: ca} }

// BenchmarkPostfix sends 300 messages of 1-20 KB per iteration: through one
// connection or a pool of four, with PIPELINING on or off.
func BenchmarkPostfix(b *testing.B) {
	srv := enginetest.RealServers(b)
	msgs := enginetest.Mix(300)
	for _, conns := range []int{1, 4} {
		for _, pipe := range []bool{true, false} {
			b.Run(fmt.Sprintf("conns=%d/pipelining=%v", conns, pipe), func(b *testing.B) {
				o := newOutput(b, &smtp.Output{Address: srv.SMTP, TLS: "none", To: []string{"sink@example.net"},
					MaxConnections: conns, Pipelining: &pipe})
				for b.Loop() {
					var wg sync.WaitGroup
					sem := make(chan struct{}, conns)
					for i, m := range msgs {
						wg.Add(1)
						sem <- struct{}{}
						go func() {
							defer wg.Done()
							defer func() { <-sem }()
							if _, err := o.Deliver(context.Background(), engine.NewMessage(m, engine.Source{Input: "b", ID: fmt.Sprint(i)}), engine.Delivery{}); err != nil {
								b.Error(err)
							}
						}()
					}
					wg.Wait()
				}
				b.ReportMetric(float64(len(msgs))/(b.Elapsed().Seconds()/float64(b.N)), "msgs/s")
			})
		}
	}
}
