package smtpd

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/engine/config"
	"github.com/mailflow/mailflow/engine/enginetest"
	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/engine/plugin"
	"github.com/mailflow/mailflow/plugins"

	_ "github.com/mailflow/mailflow/connectors/maildir"
	_ "github.com/mailflow/mailflow/scripts"
)

// memOut is an output the tests register as type "smtpdtest": it keeps
// what it is given, and answers as its test says.
type memOut struct {
	mu   sync.Mutex
	got  []delivered
	fail func(m *message.Message, d plugin.Delivery) ([]plugin.RecipientResult, error)
}

type delivered struct {
	msg    []byte
	sender string
	rcpts  []string
	client *message.Received
}

var memOuts sync.Map // output name → *memOut of the rig that made it

func init() {
	plugins.AddOutput("smtpdtest", func() plugin.Output { return &memOutPlugin{} })
}

// memOutPlugin finds its memOut by the name it is provisioned with.
type memOutPlugin struct{ name string }

func (p *memOutPlugin) Provision(env plugin.Env) error { p.name = env.Name; return nil }

func (p *memOutPlugin) Deliver(ctx context.Context, m *message.Message, d plugin.Delivery) ([]plugin.RecipientResult, error) {
	v, _ := memOuts.Load(p.name)
	o := v.(*memOut)
	o.mu.Lock()
	fail := o.fail
	o.mu.Unlock()
	if fail != nil {
		res, err := fail(m, d)
		if err != nil || res != nil {
			ok := false
			for _, r := range res {
				ok = ok || r.Err == nil
			}
			if err == nil && ok {
				o.keep(m, d)
			}
			return res, err
		}
	}
	o.keep(m, d)
	return nil, nil
}

func (o *memOut) keep(m *message.Message, d plugin.Delivery) {
	b, _ := io.ReadAll(m.Reader())
	o.mu.Lock()
	o.got = append(o.got, delivered{msg: b, sender: m.Envelope.Sender, rcpts: d.Recipients, client: m.Received})
	o.mu.Unlock()
}

func (o *memOut) all() []delivered {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]delivered(nil), o.got...)
}

func (o *memOut) setFail(f func(m *message.Message, d plugin.Delivery) ([]plugin.RecipientResult, error)) {
	o.mu.Lock()
	o.fail = f
	o.mu.Unlock()
}

// rig is mailflow running one smtp or lmtp input (its table given by the
// test) into a memOut, through an optional script.
type rig struct {
	t     *testing.T
	e     *engine.Engine
	out   *memOut
	in    *Input
	addr  string // where the input listens
	dir   string
	log   *syncBuffer
	stop  func()
	state string
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var rigSeq sync.Mutex
var rigN int

// newRig starts mailflow with an input of the given type and extra keys,
// and script (Lua source, "" for none) in its pipeline.
func newRig(t *testing.T, typ, keys, script string) *rig {
	t.Helper()
	rigSeq.Lock()
	rigN++
	outName := fmt.Sprintf("out%d", rigN)
	rigSeq.Unlock()
	r := &rig{t: t, out: &memOut{}, dir: t.TempDir(), log: &syncBuffer{}}
	memOuts.Store(outName, r.out)
	r.state = filepath.Join(r.dir, "state")
	scripts := "[]"
	if script != "" {
		os.WriteFile(filepath.Join(r.dir, "f.lua"), []byte(script), 0o600)
		scripts = `["f.lua"]`
	}
	if !strings.Contains(keys, "address") {
		keys = "address = \"127.0.0.1:0\"\n" + keys
	}
	conf := fmt.Sprintf("state_dir = %q\n[[input]]\nname = \"in\"\ntype = %q\npipeline = \"p\"\n%s\n"+
		"[[pipeline]]\nname = \"p\"\nscripts = %s\noutputs = [%q]\n[[output]]\nname = %q\ntype = \"smtpdtest\"\n",
		r.state, typ, keys, scripts, outName, outName)
	path := filepath.Join(r.dir, "mailflow.toml")
	os.WriteFile(path, []byte(conf), 0o600)
	r.start(path)
	return r
}

// start opens the engine on the config at path and runs it.
func (r *rig) start(path string) {
	t := r.t
	t.Helper()
	cfg, err := config.Load(path, plugins.Default)
	if err != nil {
		t.Fatal(err)
	}
	e, err := engine.Open(cfg, plugins.Default, slog.New(slog.NewTextHandler(r.log, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Run(ctx); close(done) }()
	r.e = e
	r.in = cfg.Input("in").Plugin.(*Input)
	stopped := false
	r.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		<-done
		e.Close()
	}
	t.Cleanup(func() {
		r.stop()
		if t.Failed() {
			t.Logf("mailflow's log:\n%s", r.log.String())
		}
	})
	// The first poll starts the listener.
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.in.mu.Lock()
		srv := r.in.srv
		r.in.mu.Unlock()
		if srv != nil {
			r.addr = srv.l.ln.Addr().String()
			if srv.l.network == "unix" {
				r.addr = "unix:" + r.addr
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the input never listened; log:\n%s", r.log.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitFor waits until the output holds n messages.
func (r *rig) waitFor(n int) []delivered {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := r.out.all()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("the output has %d messages, want %d", len(got), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// spooled lists the files in the spool's sub-directory sub, but for the
// blank ones made ahead (blank.go).
func (r *rig) spooled(sub string) []string {
	ents, _ := os.ReadDir(filepath.Join(r.state, "smtpd", "in", sub))
	var names []string
	for _, e := range ents {
		if info, err := e.Info(); err == nil && info.Size() > 0 {
			names = append(names, e.Name())
		}
	}
	return names
}

// waitSpoolEmpty waits until the engine removed every spooled message.
func (r *rig) waitSpoolEmpty() {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(r.spooled("new"))+len(r.spooled("wait"))+len(r.spooled("tmp")) > 0 {
		if time.Now().After(deadline) {
			r.t.Fatalf("the spool still holds new %v wait %v tmp %v", r.spooled("new"), r.spooled("wait"), r.spooled("tmp"))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// wire is a raw client: it writes lines and reads replies, for what a
// well-behaved client library would not send.
type wire struct {
	t    *testing.T
	c    net.Conn
	r    *textproto.Reader
	w    *bufio.Writer
	lmtp bool
}

func (r *rig) dial() *wire {
	r.t.Helper()
	network, addr := "tcp", r.addr
	if a, ok := strings.CutPrefix(r.addr, "unix:"); ok {
		network, addr = "unix", a
	}
	c, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		r.t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(60 * time.Second))
	w := &wire{t: r.t, c: c, r: textproto.NewReader(bufio.NewReader(c)), w: bufio.NewWriter(c)}
	r.t.Cleanup(func() { c.Close() })
	return w
}

// send writes lines, each ended with CRLF.
func (w *wire) send(lines ...string) {
	for _, l := range lines {
		w.w.WriteString(l + "\r\n")
	}
	if err := w.w.Flush(); err != nil {
		w.t.Fatalf("send: %v", err)
	}
}

// reply reads one reply (all its lines) and returns its code and text.
func (w *wire) reply() (int, string) {
	w.t.Helper()
	code, msg, err := w.r.ReadResponse(0)
	if err != nil && code == 0 {
		return 0, err.Error()
	}
	return code, msg
}

// expect reads a reply and fails unless its code is want.
func (w *wire) expect(want int) string {
	w.t.Helper()
	code, msg := w.reply()
	if code != want {
		w.t.Fatalf("reply %d %q, want %d", code, msg, want)
	}
	return msg
}

// hello reads the greeting and says EHLO (or LHLO).
func (w *wire) hello() string {
	w.t.Helper()
	w.expect(220)
	if w.lmtp {
		w.send("LHLO client.example.org")
	} else {
		w.send("EHLO client.example.org")
	}
	return w.expect(250)
}

// closed reports whether the server closed the connection (within d).
func (w *wire) closed(d time.Duration) bool {
	w.c.SetReadDeadline(time.Now().Add(d))
	for {
		if _, err := w.r.ReadLine(); err != nil {
			return err == io.EOF || strings.Contains(err.Error(), "reset") || strings.Contains(err.Error(), "closed")
		}
	}
}

// tlsFiles writes a certificate for 127.0.0.1 and its key, and returns
// their paths and a client config that trusts it.
func tlsFiles(t *testing.T) (cert, key string, client *tls.Config) {
	c, caFile := enginetest.TLSCert(t)
	dir := t.TempDir()
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}), 0o600)
	kb, err := x509.MarshalECPrivateKey(c.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	pool := x509.NewCertPool()
	ca, _ := os.ReadFile(caFile)
	pool.AppendCertsFromPEM(ca)
	return cert, key, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
}

// msg is a small test message.
func msg(subject, body string) string {
	return "From: alice@example.org\r\nTo: bob@example.net\r\nSubject: " + subject + "\r\nMessage-ID: <" +
		strings.ReplaceAll(subject, " ", ".") + "@example.org>\r\n\r\n" + body
}

func osStat(r *rig, name string) (int64, error) {
	fi, err := os.Stat(filepath.Join(r.state, "smtpd", "in", "new", name))
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

func osWrite(r *rig, sub, name, content string) {
	os.WriteFile(filepath.Join(r.state, "smtpd", "in", sub, name), []byte(content), 0o600)
}

type (
	messageT  = message.Message
	deliveryT = plugin.Delivery
	resultsT  = []plugin.RecipientResult
)

// hello2 says EHLO after the greeting was read.
func (w *wire) hello2() string {
	w.t.Helper()
	w.send("EHLO client.example.org")
	return w.expect(250)
}
