package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// AuthStatus is one OAuth connector's token as metrics and /healthz show
// it. The engine knows nothing of OAuth: the command that runs mailflow
// reads these from the connectors (SetAuth).
type AuthStatus struct {
	Connector string
	Expiry    time.Time // of the access token; zero before the first login
	Failures  uint64    // tokens refused by a server, or that could not be had
	Error     string    // why the last refresh failed, if it did
}

// Healthy reports whether the connector has a token it can use.
func (a AuthStatus) Healthy() bool { return a.Error == "" && time.Now().Before(a.Expiry) }

// SetAuth gives the metrics the function that reads the OAuth connectors'
// tokens at each scrape (the connectors of the config in force, so that a
// reload is followed).
func (m *Metrics) SetAuth(read func() []AuthStatus) {
	m.mu.Lock()
	m.auth = read
	m.mu.Unlock()
}

func (m *Metrics) authStatus() []AuthStatus {
	m.mu.Lock()
	read := m.auth
	m.mu.Unlock()
	if read == nil {
		return nil
	}
	return read()
}

// authCollector exports mailflow_oauth_token_expiry_seconds and
// mailflow_auth_failures_total from AuthStatus at each scrape.
type authCollector struct{ m *Metrics }

var (
	expiryDesc = prometheus.NewDesc("mailflow_oauth_token_expiry_seconds",
		"Seconds until the connector's OAuth access token expires (negative: expired; mailflow refreshes it ahead).", []string{"connector"}, nil)
	authFailuresDesc = prometheus.NewDesc("mailflow_auth_failures_total",
		"OAuth tokens a server refused, and times no token could be had (a revoked or lapsed login: see mailflow auth status).", []string{"connector"}, nil)
)

func (c authCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- expiryDesc
	ch <- authFailuresDesc
}

func (c authCollector) Collect(ch chan<- prometheus.Metric) {
	for _, a := range c.m.authStatus() {
		if !a.Expiry.IsZero() {
			ch <- prometheus.MustNewConstMetric(expiryDesc, prometheus.GaugeValue, time.Until(a.Expiry).Seconds(), a.Connector)
		}
		ch <- prometheus.MustNewConstMetric(authFailuresDesc, prometheus.CounterValue, float64(a.Failures), a.Connector)
	}
}
