package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Across machines a batch is a NATS JetStream work queue: `mailflow migrate
// --batch FILE --queue nats://…` publishes one job per mailbox, `mailflow
// worker` processes on any number of machines take them with explicit
// acks, and every mailbox's state lives in a JetStream key-value bucket
// that `mailflow migrate status` reads. NATS holds the jobs and their
// acks; mailflow holds nothing shared. A job whose worker died is
// redelivered after the ack wait and resumed by another worker: the
// destination's own dedup (skip_existing into IMAP) makes a second run of
// a mailbox safe without a shared ledger.

const (
	queueStream   = "MAILFLOW_MIGRATE"
	queueSubject  = "mailflow.migrate.job" // + "." + batch name
	queueConsumer = "mailflow-workers"
	queueBucket   = "mailflow_migrate"
	// queueDedupWindow is how long the stream remembers a job's id: the
	// same batch published again within it adds nothing even if the
	// bucket lost track of it.
	queueDedupWindow = 7 * 24 * time.Hour
)

// queueFlags are how a command reaches NATS. Secrets come from files.
type queueFlags struct {
	url, creds, ca, cert, key, user, passwordFile, tokenFile string
}

func (q *queueFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&q.url, "queue", "", "NATS `URL`s, comma-separated (nats://host:4222, tls://host:4222): the JetStream fleet")
	fs.StringVar(&q.creds, "queue-creds", "", "NATS credentials `FILE` (JWT and NKey seed)")
	fs.StringVar(&q.ca, "queue-ca", "", "`FILE` of CA certificates that sign the NATS servers' (default: the system's)")
	fs.StringVar(&q.cert, "queue-cert", "", "client certificate `FILE` for NATS TLS")
	fs.StringVar(&q.key, "queue-key", "", "client key `FILE` for NATS TLS")
	fs.StringVar(&q.user, "queue-user", "", "NATS user `NAME` (with --queue-password-file)")
	fs.StringVar(&q.passwordFile, "queue-password-file", "", "`FILE` holding the NATS user's password")
	fs.StringVar(&q.tokenFile, "queue-token-file", "", "`FILE` holding a NATS token")
}

// parseQueueCommand parses the flags of a command that talks to the
// fleet (help on -h) and checks that --queue was given; ok false means
// return code.
func parseQueueCommand(fs *flag.FlagSet, q *queueFlags, args []string, name, help string, stderr io.Writer) (code int, ok bool) {
	fs.Usage = func() {
		fmt.Fprint(stderr, help)
		fmt.Fprintln(stderr, "\nOptions:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitConfig, false
	}
	if q.url == "" {
		fmt.Fprintf(stderr, "mailflow %s: --queue is needed\n", name)
		return exitConfig, false
	}
	return exitOK, true
}

// connect dials NATS and waits (up to wait) until JetStream answers: a
// cluster just started, or one that lost a node, needs a moment to elect
// its leaders.
func (q *queueFlags) connect(ctx context.Context, name string, wait time.Duration) (*nats.Conn, jetstream.JetStream, error) {
	for _, s := range strings.Split(q.url, ",") {
		u, err := url.Parse(strings.TrimSpace(s))
		if err != nil || u.Host == "" {
			return nil, nil, fmt.Errorf("--queue %q is not a NATS URL", s)
		}
		if u.User != nil {
			return nil, nil, errors.New("--queue has credentials in it; give them with --queue-creds, --queue-user and --queue-password-file, or --queue-token-file")
		}
	}
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		// Errors are seen where they matter (a publish, an ack); the
		// client's own reports would only repeat them.
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}),
	}
	if q.creds != "" {
		opts = append(opts, nats.UserCredentials(q.creds))
	}
	if q.ca != "" {
		opts = append(opts, nats.RootCAs(q.ca))
	}
	if q.cert != "" || q.key != "" {
		opts = append(opts, nats.ClientCert(q.cert, q.key))
	}
	if q.user != "" {
		if q.passwordFile == "" {
			return nil, nil, errors.New("--queue-user needs --queue-password-file")
		}
		b, err := os.ReadFile(q.passwordFile)
		if err != nil {
			return nil, nil, err
		}
		opts = append(opts, nats.UserInfo(q.user, strings.TrimRight(string(b), "\r\n")))
	}
	if q.tokenFile != "" {
		b, err := os.ReadFile(q.tokenFile)
		if err != nil {
			return nil, nil, err
		}
		opts = append(opts, nats.Token(strings.TrimRight(string(b), "\r\n")))
	}
	var nc *nats.Conn
	var err error
	deadline := time.Now().Add(wait)
	for {
		nc, err = nats.Connect(q.url, opts...)
		// No server answering may be one starting; a certificate or
		// credentials refused will not get better by waiting.
		if err == nil || !errors.Is(err, nats.ErrNoServers) || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("connecting to NATS at %s: %w", q.url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	for {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = js.AccountInfo(actx)
		cancel()
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("NATS at %s has no JetStream (start nats-server with -js): %w", q.url, err)
	}
	return nc, js, nil
}

// retry runs op until it succeeds, ctx ends or a minute has passed: while
// a cluster elects a new leader (a node stopped) requests time out or
// find no responders for a few seconds.
func retry(ctx context.Context, op func(context.Context) error) error {
	deadline := time.Now().Add(time.Minute)
	for {
		octx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := op(octx)
		cancel()
		if err == nil || ctx.Err() != nil || time.Now().After(deadline) || !transient(err) {
			return err
		}
		select {
		case <-time.After(300 * time.Millisecond):
		case <-ctx.Done():
			return err
		}
	}
}

// transient tells a NATS error that goes away by itself from one that
// does not.
func transient(err error) bool {
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout),
		errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrNoStreamResponse),
		errors.Is(err, nats.ErrConnectionReconnecting), errors.Is(err, jetstream.ErrNoHeartbeat):
		return true
	}
	var api *jetstream.APIError
	if errors.As(err, &api) && api.Code >= 500 {
		return true // "JetStream cluster not available", a leader being elected
	}
	return strings.Contains(err.Error(), "leader") || strings.Contains(err.Error(), "not available")
}

// queueJob is one mailbox as it travels in the stream.
type queueJob struct {
	Batch     string        `json:"batch"`
	Key       string        `json:"key"` // its key in the bucket
	Row       int           `json:"row"`
	Mailbox   string        `json:"mailbox"` // the source, without a password
	Args      []string      `json:"args"`    // mailflow migrate's, without --state
	Hosts     []string      `json:"hosts"`
	Retries   int           `json:"retries"`
	RetryWait time.Duration `json:"retry_wait"`
}

// jobStatus is a mailbox's entry in the bucket: where it stands, for the
// whole fleet.
type jobStatus struct {
	Batch     string    `json:"batch"`
	Row       int       `json:"row"`
	Mailbox   string    `json:"mailbox"`
	State     string    `json:"state"` // queued, running, retrying, done, failed
	Published int       `json:"published"`
	Worker    string    `json:"worker,omitempty"`
	Tries     int       `json:"tries"`
	Done      int64     `json:"done"`
	Total     int64     `json:"total"`
	Rate      float64   `json:"rate"`
	Moved     string    `json:"moved,omitempty"`
	Verified  string    `json:"verified,omitempty"`
	Exit      int       `json:"exit"`
	Error     string    `json:"error,omitempty"`
	Seconds   float64   `json:"seconds"`
	Updated   time.Time `json:"updated"`
}

var batchNameChars = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

// batchName is the name a batch is known by in the fleet: the file's name
// unless --name says otherwise.
func batchName(file, name string) string {
	if name == "" {
		base := file[strings.LastIndex(file, "/")+1:]
		name = strings.TrimSuffix(base, ".csv")
	}
	name = strings.Trim(batchNameChars.ReplaceAllString(name, "-"), "-")
	if name == "" {
		name = "batch"
	}
	return name
}

func jobKey(batch string, args []string) string {
	sum := sha256.Sum256([]byte(strings.Join(args, "\x00")))
	return batch + "." + hex.EncodeToString(sum[:8])
}

// setUpQueue makes the stream, the workers' consumer and the bucket, or
// finds them made. replicas 0 means 3 on a cluster, 1 on a lone server.
func setUpQueue(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, replicas int, ackWait time.Duration) (jetstream.KeyValue, error) {
	if replicas <= 0 {
		replicas = 1
		if nc.ConnectedClusterName() != "" {
			replicas = 3
		}
	}
	err := retry(ctx, func(ctx context.Context) error {
		_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
			Name:        queueStream,
			Description: "mailflow migrate: one job per mailbox",
			Subjects:    []string{queueSubject + ".>"},
			Retention:   jetstream.WorkQueuePolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    replicas,
			Duplicates:  queueDedupWindow,
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("making the job stream: %w", err)
	}
	err = retry(ctx, func(ctx context.Context) error {
		_, err := js.CreateOrUpdateConsumer(ctx, queueStream, jetstream.ConsumerConfig{
			Durable:       queueConsumer,
			Description:   "mailflow worker",
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       ackWait,
			MaxDeliver:    -1, // the worker counts tries, in the bucket
			MaxAckPending: -1,
			Replicas:      replicas,
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("making the workers' consumer: %w", err)
	}
	var kv jetstream.KeyValue
	err = retry(ctx, func(ctx context.Context) (err error) {
		kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: queueBucket, Description: "mailflow migrate: each mailbox's state", Replicas: replicas,
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("making the status bucket: %w", err)
	}
	return kv, nil
}

// publishBatch puts each job in the stream unless the bucket has it
// already (queued, running or done); a failed one is queued again. The
// job's message id names the key and how many times it was queued, so
// that publishing twice, or again after a crash between publish and
// bucket, adds nothing.
func publishBatch(ctx context.Context, js jetstream.JetStream, kv jetstream.KeyValue, jobs []queueJob) (added, already int, err error) {
	for _, j := range jobs {
		var st jobStatus
		entry, gerr := getStatus(ctx, kv, j.Key, &st)
		if gerr != nil {
			return added, already, gerr
		}
		if entry && st.State != "failed" {
			already++
			continue
		}
		st = jobStatus{Batch: j.Batch, Row: j.Row, Mailbox: j.Mailbox, State: "queued", Published: st.Published + 1, Updated: time.Now().UTC()}
		data, _ := json.Marshal(j)
		msgID := fmt.Sprintf("%s@%d", j.Key, st.Published)
		err := retry(ctx, func(ctx context.Context) error {
			_, err := js.Publish(ctx, queueSubject+"."+j.Batch, data, jetstream.WithMsgID(msgID))
			return err
		})
		if err != nil {
			return added, already, fmt.Errorf("publishing %s: %w", j.Mailbox, err)
		}
		if err := putStatus(ctx, kv, j.Key, st); err != nil {
			return added, already, err
		}
		added++
	}
	return added, already, nil
}

func getStatus(ctx context.Context, kv jetstream.KeyValue, key string, st *jobStatus) (found bool, err error) {
	var e jetstream.KeyValueEntry
	err = retry(ctx, func(ctx context.Context) (err error) {
		e, err = kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil
		}
		return err
	})
	if err != nil || e == nil {
		return false, err
	}
	return true, json.Unmarshal(e.Value(), st)
}

func putStatus(ctx context.Context, kv jetstream.KeyValue, key string, st jobStatus) error {
	data, _ := json.Marshal(st)
	return retry(ctx, func(ctx context.Context) error {
		_, err := kv.Put(ctx, key, data)
		return err
	})
}
