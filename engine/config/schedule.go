package config

import (
	"fmt"
	"time"

	"github.com/robfig/cron/v3"
)

// Schedule tells when an input polls next.
type Schedule interface {
	// Next returns the first poll time after t.
	Next(t time.Time) time.Time
	String() string
}

// DefaultInterval is how often an input without a schedule polls.
const DefaultInterval = time.Minute

type every time.Duration

func (e every) Next(t time.Time) time.Time { return t.Add(time.Duration(e)) }
func (e every) String() string             { return "every " + time.Duration(e).String() }

type cronSchedule struct {
	cron.Schedule
	spec string
}

func (c cronSchedule) String() string { return "cron " + c.spec }

// ParseSchedule accepts an interval ("30s", "5m") or a cron expression
// ("*/5 * * * *", "@hourly", "@every 90s"). robfig/cron is used for the
// latter because its parser is the de facto standard in Go.
func ParseSchedule(s string) (Schedule, error) {
	if s == "" {
		return every(DefaultInterval), nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < time.Second {
			return nil, fmt.Errorf("schedule %q: an interval must be at least 1s", s)
		}
		return every(d), nil
	}
	sched, err := cron.ParseStandard(s)
	if err != nil {
		return nil, fmt.Errorf("schedule %q is neither an interval like \"30s\" nor a cron expression like \"*/5 * * * *\": %v", s, err)
	}
	return cronSchedule{sched, s}, nil
}
