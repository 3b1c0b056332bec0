package plugin

import "context"

// What "mailflow check" asks of plugins beyond Provision and Init, so that
// it catches what "run" would reject without touching mail.

// Checker is implemented by plugins that can tell, without touching mail
// or the network, what Start or the first use would find wrong: a Maildir
// that does not exist, a directory that cannot be written. Check is
// called after Init, by "mailflow check" only.
type Checker interface {
	Check() error
}

// Prober is implemented by plugins that can try their server without
// moving mail: connect, TLS, log in, log out ("mailflow check --connect").
// An input without it is tried by opening a session and closing it.
type Prober interface {
	Probe(ctx context.Context) error
}

// RouteLister is implemented by filters (scripts) that can tell, without
// running, which outputs they route to: "mailflow check" compares the
// names with the outputs the config defines.
type RouteLister interface {
	Routes() ([]Route, error)
}

// Route is one output name a filter routes to, and where: Output is ""
// when the name is computed at run time, so that no check can know it.
type Route struct {
	Output string
	File   string
	Line   int
}
