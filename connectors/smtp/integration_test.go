//go:build integration

package smtp_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailflow/mailflow/engine/plugin"

	"github.com/mailflow/mailflow/connectors/internal/endpoint"
	"github.com/mailflow/mailflow/connectors/internal/tlsconf"
	"github.com/mailflow/mailflow/connectors/smtp"
	"github.com/mailflow/mailflow/engine/enginetest"
	"github.com/mailflow/mailflow/engine/message"
)

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
	msgs = enginetest.Tagged(run, msgs)
	o := newOutput(t, &smtp.Output{Settings: endpoint.Settings{Address: srv.SMTP, TLS: "starttls", Options: tlsOptsCA(srv.CA)},
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
			res, err := o.Deliver(context.Background(), message.New(m, message.Source{Input: "t", ID: fmt.Sprint(i)}), plugin.Delivery{})
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
	got := enginetest.SinkMessages(t, srv.SinkDir, run, len(msgs))
	want := map[string]int{}
	for _, m := range msgs {
		want[enginetest.Digest(enginetest.WithoutTrace(m))]++
	}
	have := map[string]int{}
	for _, m := range got {
		have[enginetest.Digest(enginetest.WithoutTrace(m))]++
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
	msg := enginetest.Tagged(run, [][]byte{enginetest.Message(enginetest.UTF8Header, 1, 500)})[0]
	o := newOutput(t, &smtp.Output{Settings: endpoint.Settings{Address: srv.Submission, TLS: "starttls", Options: tlsOptsCA(srv.CA), Username: "u1", Password: srv.Password},
		To: []string{"sink@example.net"}})
	if res, err := o.Deliver(context.Background(), message.New(msg, message.Source{}), plugin.Delivery{}); err != nil || res[0].Err != nil {
		t.Fatalf("%v %v", res, err)
	}
	if got := enginetest.SinkMessages(t, srv.SinkDir, run, 1); len(got) != 1 {
		t.Fatal("message did not arrive through submission")
	}
	bad := newOutput(t, &smtp.Output{Settings: endpoint.Settings{Address: srv.Submission, TLS: "starttls", Options: tlsOptsCA(srv.CA), Username: "u1", Password: "wrong"},
		To: []string{"sink@example.net"}})
	if _, err := bad.Deliver(context.Background(), message.New(msg, message.Source{}), plugin.Delivery{}); err == nil || !plugin.IsPermanent(err) {
		t.Fatalf("a wrong password must be permanent, got %v", err)
	}
}

func TestPostfixPerRecipientCodes(t *testing.T) {
	srv := enginetest.RealServers(t)
	o := newOutput(t, &smtp.Output{Settings: endpoint.Settings{Address: srv.SMTP, TLS: "starttls", Options: tlsOptsCA(srv.CA)},
		To: []string{"ok@example.net", "defer@example.net", "refuse@example.net"}})
	res, err := o.Deliver(context.Background(), message.New(enginetest.Message(enginetest.Plain, 1, 100), message.Source{}), plugin.Delivery{})
	if err != nil || len(res) != 3 {
		t.Fatalf("%v %v", res, err)
	}
	if res[0].Err != nil || res[1].Err == nil || plugin.IsPermanent(res[1].Err) || !plugin.IsPermanent(res[2].Err) {
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
				o := newOutput(b, &smtp.Output{Settings: endpoint.Settings{Address: srv.SMTP, TLS: "none"},
					To: []string{"sink@example.net"}, MaxConnections: conns, Pipelining: &pipe})
				for b.Loop() {
					var wg sync.WaitGroup
					sem := make(chan struct{}, conns)
					for i, m := range msgs {
						wg.Add(1)
						sem <- struct{}{}
						go func() {
							defer wg.Done()
							defer func() { <-sem }()
							if _, err := o.Deliver(context.Background(), message.New(m, message.Source{Input: "b", ID: fmt.Sprint(i)}), plugin.Delivery{}); err != nil {
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
