// Package metrics exposes what the engine does as Prometheus metrics
// (prometheus/client_golang). It implements engine.Observer; the engine
// itself knows nothing of Prometheus. The status package serves them, with
// the health and the status page.
package metrics

import (
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

	mu   sync.Mutex
	auth func() []AuthStatus
}

// New makes the metrics and registers them, with the Go runtime and process
// collectors, in a registry of their own.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
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
	if err != nil {
		m.polls.WithLabelValues(input, "error").Inc()
		return
	}
	m.polls.WithLabelValues(input, "ok").Inc()
	m.lastPoll.WithLabelValues(input).Set(float64(now.Unix()))
}

// Waiting implements engine.Observer; metrics keep nothing of it.
func (m *Metrics) Waiting(engine.WaitEvent) {}

// Reloaded implements engine.Observer.
func (m *Metrics) Reloaded(err error) {
	if err != nil {
		m.reloads.WithLabelValues("error").Inc()
		return
	}
	m.reloads.WithLabelValues("ok").Inc()
}

// Handler serves the metrics (Prometheus's text format).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

var _ engine.Observer = (*Metrics)(nil)
