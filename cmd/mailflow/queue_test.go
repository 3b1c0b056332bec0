package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailflow/mailflow/connectors/pop3/pop3test"
	"github.com/mailflow/mailflow/engine/enginetest"
	"github.com/mailflow/mailflow/migrate/fleet"
)

// The fleet: a 3-node NATS cluster with JetStream (embedded), three
// `mailflow worker` processes, a batch of 30 mailboxes (30 POP3 servers,
// 12 messages each) into one IMAP server (a user per mailbox), paced so
// that each takes a couple of seconds. One worker is SIGKILLed while it
// migrates a mailbox and one NATS node is stopped during the run: every
// mailbox is done, each message is at its destination once, the killed
// worker's mailbox was finished by another worker, and `migrate status`
// shows all 30 done with the worker that finished each. Publishing the
// batch again queues nothing.
func TestMigrateQueueFleet(t *testing.T) {
	const boxes, perBox = 30, 12
	nodes, urls := natsCluster(t, 3)
	imapAddr := imapUsers(t, boxes)

	var rows []string
	want := map[string][]string{} // user → Message-IDs
	userOf := map[string]string{} // source, as the status names it → user
	for i := range boxes {
		src, err := pop3test.NewServer()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { src.Close() })
		user := fmt.Sprintf("box%d", i)
		for k := range perBox {
			m := enginetest.Message(enginetest.Plain, i*perBox+k, 8<<10)
			src.Add(m)
			want[user] = append(want[user], fmt.Sprintf("msg-%d-%s@example.org", i*perBox+k, enginetest.Plain))
		}
		rows = append(rows, fmt.Sprintf("pop3://u@%s?tls=none,imap://%s@%s?tls=none,MF_Q_PASS,MF_Q_PASS,true,25000",
			src.Addr(), user, imapAddr))
		userOf[fmt.Sprintf("pop3://u@%s?tls=none", src.Addr())] = user
	}
	os.Setenv("MF_Q_PASS", "p") // read by the workers' migrates
	t.Cleanup(func() { os.Unsetenv("MF_Q_PASS") })
	dir := t.TempDir()
	csvFile := filepath.Join(dir, "fleet.csv")
	os.WriteFile(csvFile, []byte("from,to,password_env,to_password_env,allow_plaintext_auth,max_bytes_per_second\n"+strings.Join(rows, "\n")+"\n"), 0o600)

	r := mailflow(t, "migrate", "--batch", csvFile, "--queue", urls, "--ack-wait", "6s", "--retry-wait", "500ms", "--retries", "5")
	if r.code != exitOK || !strings.Contains(r.stdout, "30 mailboxes queued, 0 already") {
		t.Fatalf("publishing: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	workers := map[string]*exec.Cmd{}
	logs := map[string]*syncBuffer{}
	for _, name := range []string{"w1", "w2", "w3"} {
		cmd := exec.Command(binary, "worker", "--queue", urls, "--parallel", "2", "--name", name, "--state", filepath.Join(dir, name))
		logs[name] = &syncBuffer{}
		cmd.Stdout, cmd.Stderr = logs[name], logs[name]
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		workers[name] = cmd
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	}
	defer func() {
		if t.Failed() {
			for name, l := range logs {
				t.Logf("worker %s:\n%s", name, l.String())
			}
		}
	}()

	nc, err := nats.Connect(urls)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	var kv jetstream.KeyValue
	if err := fleet.Retry(ctx, func(ctx context.Context) (err error) { kv, err = js.KeyValue(ctx, fleet.Bucket); return err }); err != nil {
		t.Fatal(err)
	}

	// Kill w1 in the middle of a mailbox: running, some of its messages
	// at the destination and not all.
	var killedBox string
	deadline := time.Now().Add(60 * time.Second)
	for killedBox == "" && time.Now().Before(deadline) {
		all, _ := fleet.ReadStatuses(ctx, kv, "fleet")
		for _, st := range all {
			if st.Worker != "w1" || st.State != "running" {
				continue
			}
			if n := len(destinationIDs(t, imapAddr, userOf[st.Mailbox])); n > 0 && n < perBox {
				killedBox = st.Mailbox
				break
			}
		}
		if killedBox == "" {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if killedBox == "" {
		t.Fatal("w1 was never seen in the middle of a mailbox")
	}
	workers["w1"].Process.Signal(syscall.SIGKILL)
	workers["w1"].Wait()
	t.Logf("w1 killed in the middle of %s", killedBox)

	// Then a NATS node goes away; the jobs and the bucket have 3 replicas.
	time.Sleep(time.Second)
	nodes[2].Shutdown()
	t.Log("NATS node n2 stopped")

	var all map[string]fleet.Status
	deadline = time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		all, _ = fleet.ReadStatuses(ctx, kv, "fleet")
		done := 0
		for _, st := range all {
			if st.State == "done" {
				done++
			}
		}
		if done == boxes {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, st := range all {
		if st.State != "done" {
			t.Fatalf("%s: %s (%s)", st.Mailbox, st.State, st.Error)
		}
		if st.Mailbox == killedBox && (st.Worker == "w1" || st.Tries < 2) {
			t.Errorf("%s, the killed worker's mailbox, was finished by %s in %d tries", st.Mailbox, st.Worker, st.Tries)
		}
	}
	if len(all) != boxes {
		t.Fatalf("%d mailboxes in the status, want %d", len(all), boxes)
	}

	// Each message exactly once at its destination.
	for user, ids := range want {
		got := destinationIDs(t, imapAddr, user)
		if len(got) != len(ids) {
			t.Errorf("%s holds %d messages, want %d", user, len(got), len(ids))
		}
		seen := map[string]int{}
		for _, id := range got {
			seen[id]++
		}
		for _, id := range ids {
			if seen[id] != 1 {
				t.Errorf("%s: message %s is there %d times", user, id, seen[id])
			}
		}
	}

	// The status, as an operator sees it.
	r = mailflow(t, "migrate", "status", "--queue", urls, "--name", "fleet")
	t.Logf("status:\n%s", r.stdout)
	if r.code != exitOK || !strings.Contains(r.stdout, "30 mailboxes: 30 done, 0 failed") {
		t.Fatalf("status: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, line := range strings.Split(r.stdout, "\n") {
		if strings.Contains(line, "pop3://") && !strings.Contains(line, " w2 ") && !strings.Contains(line, " w3 ") && !strings.Contains(line, " w1 ") {
			t.Errorf("no worker named in %q", line)
		}
	}
	// Publishing the same batch again adds nothing.
	r = mailflow(t, "migrate", "--batch", csvFile, "--queue", urls)
	if r.code != exitOK || !strings.Contains(r.stdout, "0 mailboxes queued, 30 already") {
		t.Fatalf("publishing again: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	s, err := js.Stream(ctx, fleet.Stream)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := s.Info(ctx); err != nil || info.State.Msgs != 0 {
		t.Fatalf("the stream holds %v jobs (%v), want none", info.State.Msgs, err)
	}
}

// natsCluster starts n embedded nats-servers with JetStream, routed into
// one cluster on 127.0.0.1, and returns them and their client URLs.
func natsCluster(t *testing.T, n int) ([]*server.Server, string) {
	t.Helper()
	client, cluster := freePorts(t, n), freePorts(t, n)
	var routes, urls []string
	for i := range n {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", cluster[i]))
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", client[i]))
	}
	var nodes []*server.Server
	for i := range n {
		s, err := server.NewServer(&server.Options{
			ServerName: fmt.Sprintf("n%d", i), Host: "127.0.0.1", Port: client[i],
			JetStream: true, StoreDir: t.TempDir(), JetStreamMaxMemory: 64 << 20, JetStreamMaxStore: 256 << 20,
			Cluster: server.ClusterOpts{Name: "mailflow-test", Host: "127.0.0.1", Port: cluster[i]},
			Routes:  server.RoutesFromStr(strings.Join(routes, ",")),
			NoLog:   true, NoSigs: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		go s.Start()
		t.Cleanup(s.Shutdown)
		nodes = append(nodes, s)
	}
	for _, s := range nodes {
		if !s.ReadyForConnections(20 * time.Second) {
			t.Fatal("a NATS node did not start")
		}
	}
	return nodes, strings.Join(urls, ",")
}

func freePorts(t *testing.T, n int) []int {
	var ports []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}

// imapUsers serves an in-memory IMAP server with users box0..box(n-1),
// password "p".
func imapUsers(t *testing.T, n int) string {
	t.Helper()
	mem := imapmemserver.New()
	for i := range n {
		u := imapmemserver.NewUser(fmt.Sprintf("box%d", i), "p")
		u.Create("INBOX", nil)
		mem.AddUser(u)
	}
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps:         goimap.CapSet{goimap.CapIMAP4rev1: {}, goimap.CapIMAP4rev2: {}},
		InsecureAuth: true,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// destinationIDs lists the Message-IDs in user's INBOX.
func destinationIDs(t *testing.T, addr, user string) []string {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(user, "p").Wait(); err != nil {
		t.Fatal(err)
	}
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sel.NumMessages == 0 {
		return nil
	}
	var all goimap.SeqSet
	all.AddRange(1, 0) // 1:*
	msgs, err := c.Fetch(all, &goimap.FetchOptions{Envelope: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range msgs {
		ids = append(ids, m.Envelope.MessageID)
	}
	return ids
}

// NATS is reached as securely as the mail servers: over tls:// the
// server's certificate is verified (against --queue-ca), credentials come
// from files, and a URL with credentials in it is refused. A batch queued
// that way is seen by migrate status the same way.
func TestQueueTLSAndCredentials(t *testing.T) {
	cert, caFile := enginetest.TLSCert(t)
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, TLSTimeout: 5,
		Authorization: "s3cret-token", NoLog: true, NoSigs: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	t.Cleanup(s.Shutdown)
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	url := fmt.Sprintf("tls://127.0.0.1:%d", s.Addr().(*net.TCPAddr).Port)
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	os.WriteFile(token, []byte("s3cret-token\n"), 0o600)
	csvFile := filepath.Join(dir, "tls.csv")
	os.WriteFile(csvFile, []byte("from,to,rcpt,password_env\npop3s://u@127.0.0.1:1,smtp://127.0.0.1:2,a@example.net,NOPE\n"), 0o600)

	r := mailflow(t, "migrate", "--batch", csvFile, "--queue", url, "--queue-ca", caFile, "--queue-token-file", token)
	if r.code != exitOK || !strings.Contains(r.stdout, "1 mailboxes queued") {
		t.Fatalf("queueing over TLS with a token file: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = mailflow(t, "migrate", "status", "--queue", url, "--queue-ca", caFile, "--queue-token-file", token)
	if r.code != exitPending || !strings.Contains(r.stdout, "1 mailboxes: 0 done, 0 failed, 0 running, 1 queued") {
		t.Fatalf("status: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--queue", url, "--queue-token-file", token}, "certificate"}, // not our CA
		{[]string{"--queue", url, "--queue-ca", caFile}, "uthorization"},       // no token
		{[]string{"--queue", "tls://tok:en@127.0.0.1:1", "--queue-ca", caFile}, "credentials in it"},
	} {
		r := mailflow(t, append([]string{"migrate", "status", "--wait=false"}, c.args...)...)
		if r.code == exitOK || !strings.Contains(r.stderr, c.want) || strings.Contains(r.stderr, "s3cret") {
			t.Errorf("%v: exit %d, want an error saying %q:\n%s", c.args, r.code, c.want, r.stderr)
		}
	}
}
