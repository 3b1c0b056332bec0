// Package fleet migrates many mailboxes across machines: a batch is a NATS
// JetStream work queue. Publish puts one job (a migrate.Plan) per mailbox
// in the stream; Workers on any number of machines take them with explicit
// acks and run each in a child process (migrate.Child); every mailbox's
// Status lives in a JetStream key-value bucket that anyone can read. NATS
// holds the jobs and their acks; mailflow holds nothing shared. A job
// whose worker died is redelivered after the ack wait and resumed by
// another worker: the destination's own dedup (skip_existing into IMAP)
// makes a second run of a mailbox safe without a shared ledger.
package fleet

import (
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/pflag"

	"github.com/mailflow/mailflow/migrate"
	"github.com/mailflow/mailflow/migrate/batch"
)

const (
	// Stream holds the jobs, Subject prefixes their subjects (+ "." +
	// the batch's name), Consumer is the workers' durable consumer and
	// Bucket the key-value bucket of every mailbox's Status.
	Stream   = "MAILFLOW_MIGRATE"
	Subject  = "mailflow.migrate.job"
	Consumer = "mailflow-workers"
	Bucket   = "mailflow_migrate"
	// dedupWindow is how long the stream remembers a job's id: the same
	// batch published again within it adds nothing even if the bucket
	// lost track of it.
	dedupWindow = 7 * 24 * time.Hour
)

// Conn is how to reach NATS. Secrets come from files.
type Conn struct {
	URL          string // comma-separated nats:// or tls:// URLs
	Creds        string // credentials file (JWT and NKey seed)
	CA           string // CA certificates that sign the servers' (default: the system's)
	Cert, Key    string // client certificate for TLS
	User         string // with PasswordFile
	PasswordFile string
	TokenFile    string
	// Log, if set, is told of each attempt to reach NATS, so that a
	// worker waiting for a server that is down does not sit silent.
	Log *slog.Logger
}

// Flags registers the --queue flags that fill q.
func (q *Conn) Flags(fs *pflag.FlagSet) {
	fs.StringVar(&q.URL, "queue", "", "NATS `URL`s, comma-separated (nats://host:4222, tls://host:4222): the JetStream fleet")
	fs.StringVar(&q.Creds, "queue-creds", "", "NATS credentials `FILE` (JWT and NKey seed)")
	fs.StringVar(&q.CA, "queue-ca", "", "`FILE` of CA certificates that sign the NATS servers' (default: the system's)")
	fs.StringVar(&q.Cert, "queue-cert", "", "client certificate `FILE` for NATS TLS")
	fs.StringVar(&q.Key, "queue-key", "", "client key `FILE` for NATS TLS")
	fs.StringVar(&q.User, "queue-user", "", "NATS user `NAME` (with --queue-password-file)")
	fs.StringVar(&q.PasswordFile, "queue-password-file", "", "`FILE` holding the NATS user's password")
	fs.StringVar(&q.TokenFile, "queue-token-file", "", "`FILE` holding a NATS token")
}

// Connect dials NATS and waits (up to wait) until JetStream answers: a
// cluster just started, or one that lost a node, needs a moment to elect
// its leaders. name names the client in NATS.
func (q *Conn) Connect(ctx context.Context, name string, wait time.Duration) (*nats.Conn, jetstream.JetStream, error) {
	for _, s := range strings.Split(q.URL, ",") {
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
	if q.Creds != "" {
		opts = append(opts, nats.UserCredentials(q.Creds))
	}
	if q.CA != "" {
		opts = append(opts, nats.RootCAs(q.CA))
	}
	if q.Cert != "" || q.Key != "" {
		opts = append(opts, nats.ClientCert(q.Cert, q.Key))
	}
	if q.User != "" {
		if q.PasswordFile == "" {
			return nil, nil, errors.New("--queue-user needs --queue-password-file")
		}
		b, err := os.ReadFile(q.PasswordFile)
		if err != nil {
			return nil, nil, err
		}
		opts = append(opts, nats.UserInfo(q.User, strings.TrimRight(string(b), "\r\n")))
	}
	if q.TokenFile != "" {
		b, err := os.ReadFile(q.TokenFile)
		if err != nil {
			return nil, nil, err
		}
		opts = append(opts, nats.Token(strings.TrimRight(string(b), "\r\n")))
	}
	var nc *nats.Conn
	var err error
	deadline := time.Now().Add(wait)
	for attempt := 1; ; attempt++ {
		q.log("connecting to NATS", "url", q.URL, "attempt", attempt)
		nc, err = nats.Connect(q.URL, opts...)
		// No server answering may be one starting; a certificate or
		// credentials refused will not get better by waiting.
		if err == nil || !errors.Is(err, nats.ErrNoServers) || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		q.log("NATS does not answer yet; trying again", "url", q.URL, "err", err, "gives up in", time.Until(deadline).Round(time.Second))
		time.Sleep(time.Second)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("connecting to NATS at %s: %w", q.URL, err)
	}
	q.log("connected to NATS", "url", nc.ConnectedUrlRedacted())
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
		return nil, nil, fmt.Errorf("NATS at %s has no JetStream (start nats-server with -js): %w", q.URL, err)
	}
	return nc, js, nil
}

func (q *Conn) log(msg string, args ...any) {
	if q.Log != nil {
		q.Log.Info(msg, args...)
	}
}

// Retry runs op until it succeeds, ctx ends, a minute has passed, or it
// fails in a way that waiting cannot mend: while a cluster elects a new
// leader (a node stopped) requests time out or find no responders for a
// few seconds.
func Retry(ctx context.Context, op func(context.Context) error) error {
	deadline := time.Now().Add(time.Minute)
	for {
		octx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := op(octx)
		cancel()
		if err == nil || ctx.Err() != nil || time.Now().After(deadline) || !Transient(err) {
			return err
		}
		select {
		case <-time.After(300 * time.Millisecond):
		case <-ctx.Done():
			return err
		}
	}
}

// Transient tells a NATS error that goes away by itself (a timeout, no
// responder while a leader is elected, a reconnection, the cluster
// answering 5xx) from one that does not (a stream or key not found, a
// permission refused), by its type and code, never its text.
func Transient(err error) bool {
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout),
		errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrNoStreamResponse),
		errors.Is(err, nats.ErrConnectionReconnecting), errors.Is(err, jetstream.ErrNoHeartbeat),
		errors.Is(err, jetstream.ErrConsumerLeadershipChanged), errors.Is(err, nats.ErrJetStreamNotEnabled):
		return true
	}
	var api *jetstream.APIError
	if errors.As(err, &api) {
		// 5xx: "JetStream cluster not available", no leader yet, a
		// replica restarting (insufficient resources).
		return api.Code >= 500 || api.ErrorCode == jetstream.JSErrCodeJetStreamNotEnabled
	}
	var old *nats.APIError
	return errors.As(err, &old) && old.Code >= 500
}

// Job is one mailbox as it travels in the stream.
type Job struct {
	Batch     string        `json:"batch"`
	Key       string        `json:"key"` // its key in the bucket
	Row       int           `json:"row"`
	Mailbox   string        `json:"mailbox"` // the source, without secrets
	Plan      migrate.Plan  `json:"plan"`    // without a state directory: each worker keeps its own
	Retries   int           `json:"retries"`
	RetryWait time.Duration `json:"retry_wait"`
}

// Status is a mailbox's entry in the bucket: where it stands, for the
// whole fleet.
type Status struct {
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
	Moved     int64     `json:"moved"`
	Verified  string    `json:"verified,omitempty"`
	Result    string    `json:"result,omitempty"` // done, quarantined, failed
	Class     string    `json:"class,omitempty"`  // of Error
	Error     string    `json:"error,omitempty"`
	Seconds   float64   `json:"seconds"`
	Updated   time.Time `json:"updated"`
}

var batchNameChars = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

// BatchName is the name a batch is known by in the fleet: the file's name
// unless name says otherwise, made fit for a NATS subject.
func BatchName(file, name string) string {
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

// JobKey is a job's key in the bucket: its batch and its plan.
func JobKey(batch string, p migrate.Plan) string {
	b, _ := json.Marshal(p)
	sum := sha256.Sum256(b)
	return batch + "." + hex.EncodeToString(sum[:8])
}

// SetUp makes the stream, the workers' consumer and the bucket, or finds
// them made. replicas 0 means 3 on a cluster, 1 on a lone server.
func SetUp(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, replicas int, ackWait time.Duration) (jetstream.KeyValue, error) {
	if replicas <= 0 {
		replicas = 1
		if nc.ConnectedClusterName() != "" {
			replicas = 3
		}
	}
	err := Retry(ctx, func(ctx context.Context) error {
		_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
			Name:        Stream,
			Description: "mailflow migrate: one job per mailbox",
			Subjects:    []string{Subject + ".>"},
			Retention:   jetstream.WorkQueuePolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    replicas,
			Duplicates:  dedupWindow,
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("making the job stream: %w", err)
	}
	err = Retry(ctx, func(ctx context.Context) error {
		_, err := js.CreateOrUpdateConsumer(ctx, Stream, jetstream.ConsumerConfig{
			Durable:       Consumer,
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
	err = Retry(ctx, func(ctx context.Context) (err error) {
		kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: Bucket, Description: "mailflow migrate: each mailbox's state", Replicas: replicas,
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("making the status bucket: %w", err)
	}
	return kv, nil
}

// Publish puts each job in the stream unless the bucket has it already
// (queued, running or done); a failed one is queued again. The job's
// message id names the key and how many times it was queued, so that
// publishing twice, or again after a crash between publish and bucket,
// adds nothing.
func Publish(ctx context.Context, js jetstream.JetStream, kv jetstream.KeyValue, jobs []Job) (added, already int, err error) {
	for _, j := range jobs {
		var st Status
		entry, gerr := GetStatus(ctx, kv, j.Key, &st)
		if gerr != nil {
			return added, already, gerr
		}
		if entry && st.State != "failed" {
			already++
			continue
		}
		st = Status{Batch: j.Batch, Row: j.Row, Mailbox: j.Mailbox, State: "queued", Published: st.Published + 1, Updated: time.Now().UTC()}
		data, _ := json.Marshal(j)
		msgID := fmt.Sprintf("%s@%d", j.Key, st.Published)
		err := Retry(ctx, func(ctx context.Context) error {
			_, err := js.Publish(ctx, Subject+"."+j.Batch, data, jetstream.WithMsgID(msgID))
			return err
		})
		if err != nil {
			return added, already, fmt.Errorf("publishing %s: %w", j.Mailbox, err)
		}
		if err := PutStatus(ctx, kv, j.Key, st); err != nil {
			return added, already, err
		}
		added++
	}
	return added, already, nil
}

// GetStatus reads a mailbox's entry; found is false when there is none.
func GetStatus(ctx context.Context, kv jetstream.KeyValue, key string, st *Status) (found bool, err error) {
	var e jetstream.KeyValueEntry
	err = Retry(ctx, func(ctx context.Context) (err error) {
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

// PutStatus writes a mailbox's entry.
func PutStatus(ctx context.Context, kv jetstream.KeyValue, key string, st Status) error {
	data, _ := json.Marshal(st)
	return Retry(ctx, func(ctx context.Context) error {
		_, err := kv.Put(ctx, key, data)
		return err
	})
}

// ReadStatuses reads every mailbox's entry (of one batch, if name is set).
func ReadStatuses(ctx context.Context, kv jetstream.KeyValue, name string) (map[string]Status, error) {
	var keys []string
	err := Retry(ctx, func(ctx context.Context) (err error) {
		keys, err = kv.Keys(ctx)
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			keys, err = nil, nil
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	all := map[string]Status{}
	for _, k := range keys {
		if name != "" && !strings.HasPrefix(k, name+".") {
			continue
		}
		var e jetstream.KeyValueEntry
		if err := Retry(ctx, func(ctx context.Context) (err error) { e, err = kv.Get(ctx, k); return err }); err != nil {
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				continue
			}
			return all, err
		}
		var st Status
		if json.Unmarshal(e.Value(), &st) == nil {
			all[k] = st
		}
	}
	return all, nil
}

// Follow reads the batch's statuses every while, handing each reading to
// show, until every mailbox is done or failed (and there is one), or ctx
// ends; it returns the last reading.
func Follow(ctx context.Context, kv jetstream.KeyValue, name string, every time.Duration, show func(map[string]Status, error)) map[string]Status {
	for {
		all, err := ReadStatuses(ctx, kv, name)
		show(all, err)
		open := 0
		for _, st := range all {
			if st.State != "done" && st.State != "failed" {
				open++
			}
		}
		if err == nil && len(all) > 0 && open == 0 || ctx.Err() != nil {
			return all
		}
		select {
		case <-time.After(every):
		case <-ctx.Done():
		}
	}
}

// Sorted lists statuses by batch and row.
func Sorted(all map[string]Status) []Status {
	rows := make([]Status, 0, len(all))
	for _, st := range all {
		rows = append(rows, st)
	}
	sort.Slice(rows, func(a, b int) bool {
		if rows[a].Batch != rows[b].Batch {
			return rows[a].Batch < rows[b].Batch
		}
		return rows[a].Row < rows[b].Row
	})
	return rows
}

// WriteReport writes statuses as CSV.
func WriteReport(path string, all map[string]Status) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	cw := csv.NewWriter(f)
	cw.Write([]string{"batch", "row", "mailbox", "state", "worker", "tries", "done", "total", "moved", "verified", "seconds", "result", "class", "error"})
	for _, st := range Sorted(all) {
		cw.Write([]string{st.Batch, strconv.Itoa(st.Row), st.Mailbox, st.State, st.Worker, strconv.Itoa(st.Tries),
			strconv.FormatInt(st.Done, 10), strconv.FormatInt(st.Total, 10), strconv.FormatInt(st.Moved, 10), st.Verified,
			strconv.FormatFloat(st.Seconds, 'f', 1, 64), st.Result, st.Class, st.Error})
	}
	cw.Flush()
	return errors.Join(cw.Error(), f.Close())
}

// JobsOf are a batch's rows as the fleet's jobs, under the batch's name.
func JobsOf(name string, rows []*batch.Job, retries int, retryWait time.Duration) []Job {
	jobs := make([]Job, 0, len(rows))
	for _, j := range rows {
		jobs = append(jobs, Job{Batch: name, Key: JobKey(name, j.Plan), Row: j.Row, Mailbox: j.Name,
			Plan: j.Plan, Retries: retries, RetryWait: retryWait})
	}
	return jobs
}
