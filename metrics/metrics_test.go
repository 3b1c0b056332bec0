package metrics

import (
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/engine/plugin"
)

func scrape(t *testing.T, m *Metrics, path string) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	if rec.Code != 200 {
		t.Fatalf("%s: %d", path, rec.Code)
	}
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}

func TestObserverFeedsMetricsAndHealth(t *testing.T) {
	m := New()
	for _, ev := range []engine.MessageEvent{
		{Input: "inbox", Outcome: engine.Delivered, Bytes: 1000, Took: 20 * time.Millisecond},
		{Input: "inbox", Outcome: engine.Delivered, Bytes: 500, Took: 10 * time.Millisecond},
		{Input: "inbox", Outcome: engine.Quarantined, Bytes: 10, Took: time.Millisecond},
	} {
		m.MessageFetched(ev.Input, "", ev.Bytes)
		m.MessageDone(ev)
	}
	m.OutputDone(engine.OutputEvent{Output: "archive", Bytes: 1500, Took: 5 * time.Millisecond})
	m.OutputDone(engine.OutputEvent{Output: "relay", Err: errors.New("421 try later"), Bytes: 10, Took: time.Millisecond})
	m.OutputDone(engine.OutputEvent{Output: "relay", Err: plugin.Permanent(errors.New("550 no")), Bytes: 10, Took: time.Millisecond})
	m.OutputDone(engine.OutputEvent{Output: "mx", Err: plugin.InDoubt(errors.New("no reply after DATA")), Bytes: 10, Took: time.Millisecond})
	m.PollDone(engine.PollEvent{Input: "inbox"})
	m.PollDone(engine.PollEvent{Input: "pop", Err: errors.New("connection refused")})
	m.Reloaded(nil)
	m.Reloaded(errors.New("typo"))

	out := scrape(t, m, "/metrics")
	for _, want := range []string{
		`mailflow_messages_fetched_total{input="inbox"} 3`,
		`mailflow_messages_total{input="inbox",outcome="delivered"} 2`,
		`mailflow_messages_total{input="inbox",outcome="quarantined"} 1`,
		`mailflow_message_bytes_total{input="inbox"} 1510`,
		`mailflow_message_duration_seconds_count{input="inbox"} 3`,
		`mailflow_output_deliveries_total{output="archive",result="accepted"} 1`,
		`mailflow_output_deliveries_total{output="relay",result="temporary"} 1`,
		`mailflow_output_deliveries_total{output="relay",result="permanent"} 1`,
		`mailflow_output_bytes_total{output="archive"} 1500`,
		`mailflow_output_deliveries_total{output="mx",result="in_doubt"} 1`,
		`mailflow_output_healthy{output="archive"} 1`,
		`mailflow_output_healthy{output="mx"} 0`,
		`mailflow_polls_total{input="inbox",result="ok"} 1`,
		`mailflow_polls_total{input="pop",result="error"} 1`,
		`mailflow_reloads_total{result="ok"} 1`,
		`mailflow_reloads_total{result="error"} 1`,
		`mailflow_last_successful_poll_timestamp_seconds{input="inbox"}`,
		`go_goroutines`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(out, `mailflow_last_successful_poll_timestamp_seconds{input="pop"}`) {
		t.Error("a failed poll set the last successful poll time")
	}
}

// OAuth connectors' tokens show as mailflow_oauth_token_expiry_seconds and
// mailflow_auth_failures_total, read at each scrape (the status page's
// health shows them too: status.Health).
func TestOAuthTokensInMetrics(t *testing.T) {
	m := New()
	state := []AuthStatus{
		{Connector: "gmail", Expiry: time.Now().Add(30 * time.Minute), Failures: 1},
		{Connector: "m365", Expiry: time.Now().Add(-time.Minute), Failures: 4, Error: "the provider refused the refresh: invalid_grant"},
	}
	m.SetAuth(func() []AuthStatus { return state })
	out := scrape(t, m, "/metrics")
	for _, want := range []string{`mailflow_auth_failures_total{connector="gmail"} 1`, `mailflow_auth_failures_total{connector="m365"} 4`,
		`mailflow_oauth_token_expiry_seconds{connector="gmail"} 17`, `mailflow_oauth_token_expiry_seconds{connector="m365"} -6`} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
