// Package metrics exposes what the engine does as Prometheus metrics
// (prometheus/client_golang), and a /healthz endpoint. It implements
// engine.Observer; the engine itself knows nothing of Prometheus.
package metrics

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/engine/plugin"
)

// Metrics is an engine.Observer that records into its own registry.
type Metrics struct {
	reg *prometheus.Registry

	fetched     *prometheus.CounterVec   // input
	messages    *prometheus.CounterVec   // input, outcome
	bytes       *prometheus.CounterVec   // input
	duration    *prometheus.HistogramVec // input
	deliveries  *prometheus.CounterVec   // output, result
	outBytes    *prometheus.CounterVec   // output
	outDuration *prometheus.HistogramVec // output
	polls       *prometheus.CounterVec   // input, result
	lastPoll    *prometheus.GaugeVec     // input
	reloads     *prometheus.CounterVec   // result
	healthy     *prometheus.GaugeVec     // output

	mu      sync.Mutex
	started time.Time
	inputs  map[string]pollState
	auth    func() []AuthStatus
}

type pollState struct {
	LastPoll    time.Time `json:"last_poll"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
}

// New makes the metrics and registers them, with the Go runtime and process
// collectors, in a registry of their own.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), started: time.Now(), inputs: map[string]pollState{}}
	buckets := []float64{.001, .005, .01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
	m.fetched = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mailflow_messages_fetched_total", Help: "Messages read from an input.",
	}, []string{"input"})
	m.messages = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mailflow_messages_total", Help: "Messages a poll decided on, by input and outcome (settled: delivered, dropped, quarantined, skipped; not: deferred, left, held).",
	}, []string{"input", "outcome"})
	m.bytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mailflow_message_bytes_total", Help: "Bytes of messages read from an input.",
	}, []string{"input"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "mailflow_message_duration_seconds", Help: "Time from reading a message to its outcome.", Buckets: buckets,
	}, []string{"input"})
	m.deliveries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mailflow_output_deliveries_total", Help: "Delivery attempts, by output and result (accepted, temporary, permanent, in_doubt: the reply after the data was lost).",
	}, []string{"output", "result"})
	m.outBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mailflow_output_bytes_total", Help: "Bytes accepted by an output.",
	}, []string{"output"})
	m.outDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "mailflow_output_duration_seconds", Help: "Time one delivery attempt took.", Buckets: buckets,
	}, []string{"output"})
	m.polls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mailflow_polls_total", Help: "Polls of an input, by result (ok, error).",
	}, []string{"input", "result"})
	m.lastPoll = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "mailflow_last_successful_poll_timestamp_seconds", Help: "When an input last polled without error (Unix time).",
	}, []string{"input"})
	m.healthy = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "mailflow_output_healthy", Help: "1 when an output's last delivery attempt went through or was refused for that message only, 0 when it failed for now (server down, TLS or AUTH missing, a 4xx, a lost reply).",
	}, []string{"output"})
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "mailflow_reloads_total", Help: "Config reloads, by result (ok, error).",
	}, []string{"result"})
	m.reg.MustRegister(m.fetched, m.messages, m.bytes, m.duration, m.deliveries, m.outBytes, m.outDuration, m.healthy,
		m.polls, m.lastPoll, m.reloads, authCollector{m},
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

// MessageFetched implements engine.Observer.
func (m *Metrics) MessageFetched(input, _ string, bytes int64) {
	m.fetched.WithLabelValues(input).Inc()
	m.bytes.WithLabelValues(input).Add(float64(bytes))
}

// MessageDone implements engine.Observer.
func (m *Metrics) MessageDone(ev engine.MessageEvent) {
	m.messages.WithLabelValues(ev.Input, string(ev.Outcome)).Inc()
	if ev.Took > 0 {
		m.duration.WithLabelValues(ev.Input).Observe(ev.Took.Seconds())
	}
}

// OutputDone implements engine.Observer.
func (m *Metrics) OutputDone(ev engine.OutputEvent) {
	result := "accepted"
	switch {
	case ev.Err == nil:
		m.outBytes.WithLabelValues(ev.Output).Add(float64(ev.Bytes))
	case plugin.IsPermanent(ev.Err):
		result = "permanent"
	case plugin.IsInDoubt(ev.Err):
		result = "in_doubt"
	default:
		result = "temporary"
	}
	m.deliveries.WithLabelValues(ev.Output, result).Inc()
	if result == "temporary" || result == "in_doubt" {
		m.healthy.WithLabelValues(ev.Output).Set(0)
	} else {
		m.healthy.WithLabelValues(ev.Output).Set(1)
	}
	m.outDuration.WithLabelValues(ev.Output).Observe(ev.Took.Seconds())
}

// PollDone implements engine.Observer.
func (m *Metrics) PollDone(ev engine.PollEvent) {
	input, err := ev.Input, ev.Err
	now := time.Now()
	m.mu.Lock()
	st := m.inputs[input]
	st.LastPoll = now
	if err == nil {
		st.LastSuccess, st.LastError = now, ""
	} else {
		st.LastError = err.Error()
	}
	m.inputs[input] = st
	m.mu.Unlock()
	if err != nil {
		m.polls.WithLabelValues(input, "error").Inc()
		return
	}
	m.polls.WithLabelValues(input, "ok").Inc()
	m.lastPoll.WithLabelValues(input).Set(float64(now.Unix()))
}

// Reloaded implements engine.Observer.
func (m *Metrics) Reloaded(err error) {
	if err != nil {
		m.reloads.WithLabelValues("error").Inc()
		return
	}
	m.reloads.WithLabelValues("ok").Inc()
}

// Handler serves /metrics and /healthz. /healthz answers 200 with each
// input's last poll while the process runs: it is a liveness check, and the
// body says which inputs are failing.
func (m *Metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		auth := map[string]any{}
		for _, a := range m.authStatus() {
			auth[a.Connector] = map[string]any{"healthy": a.Healthy(), "expiry": a.Expiry, "error": a.Error}
		}
		m.mu.Lock()
		body := map[string]any{"status": "ok", "uptime_seconds": int(time.Since(m.started).Seconds()), "inputs": m.inputs, "oauth": auth}
		b, err := json.MarshalIndent(body, "", "  ")
		m.mu.Unlock()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(append(b, '\n'))
	})
	return mux
}

// Serve listens on addr and serves Handler until Close. It returns once
// listening, so that a port already in use is an error at start-up.
func (m *Metrics) Serve(addr string) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: m.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			_ = err // the listener closed under us; nothing to do but stop
		}
	}()
	return srv, nil
}

var _ engine.Observer = (*Metrics)(nil)
