package main

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"mime/quotedprintable"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/mailflow/mailflow/engine/config"

	gomessage "github.com/emersion/go-message"
	"github.com/mailflow/mailflow/engine/plugin"

	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/plugins"
)

const testHelp = `Usage: mailflow test -c FILE [--pipeline NAME] MSG.eml|DIR...
       mailflow test --script A.lua [--script B.lua ...] MSG.eml|DIR...

Runs a pipeline's filter chain (or the given scripts, in order) on messages
read from files, and prints for each the verdict, the outputs and envelope
recipients it would go to, what changed in its header, and the messages
scripts generated (vacation replies, notifications). Nothing is sent,
nothing is deleted, no state is written. A directory is read recursively
(a Maildir works). Exits 1 if a script broke on any message.
`

type scriptList []string

func (s *scriptList) String() string     { return strings.Join(*s, ",") }
func (s *scriptList) Set(v string) error { *s = append(*s, v); return nil }

func cmdTest(args []string, stdout, stderr io.Writer) int {
	var c common
	fs := newFlags("test", testHelp, stderr, &c)
	pipelineName := fs.String("pipeline", "", "the pipeline `NAME` whose scripts run (default: the only one)")
	var scripts scriptList
	fs.Var(&scripts, "script", "a script `FILE` to run (repeat for a chain); instead of a pipeline")
	scriptLib := fs.String("script-lib", "", "the `DIR` require() loads modules from (default: the config's script_lib)")
	if code, stop := parseFlags(fs, args, stdout); stop {
		return code
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "mailflow test: give one or more message files or directories")
		return exitConfig
	}
	log, err := c.logger(stderr)
	if err != nil {
		fmt.Fprintln(stderr, "mailflow:", err)
		return exitConfig
	}

	limits := plugin.ScriptLimits{}
	var defaultOutputs []string
	switch {
	case c.config != "":
		cfg, err := config.Load(c.config, plugins.Default)
		if err != nil {
			fmt.Fprintln(stderr, "mailflow:", err)
			return exitConfig
		}
		limits = cfg.Script
		limits.StoreDir = "" // a test run keeps its store in memory: it changes nothing
		if len(scripts) == 0 {
			p, err := choosePipeline(cfg, *pipelineName)
			if err != nil {
				fmt.Fprintln(stderr, "mailflow test:", err)
				return exitConfig
			}
			scripts, defaultOutputs = p.Scripts, append([]string{}, p.Outputs...) // non-nil: the pipeline's
		}
	case len(scripts) == 0:
		fmt.Fprintln(stderr, "mailflow test: give -c FILE (and --pipeline) or --script FILE")
		return exitConfig
	}
	if *scriptLib != "" {
		limits.LibDir = *scriptLib
	}
	chain, err := engine.LoadChain(plugins.Default, nil, scripts, limits, log)
	if err != nil {
		fmt.Fprintln(stderr, "mailflow:", err)
		return exitConfig
	}
	defer chain.Close()

	files, err := messageFiles(fs.Args())
	if err != nil {
		fmt.Fprintln(stderr, "mailflow test:", err)
		return exitConfig
	}
	broke := 0
	counts := map[string]int{}
	for _, f := range files {
		verdict, err := testOne(stdout, chain, f, defaultOutputs)
		if err != nil {
			broke++
			counts["broke"]++
			continue
		}
		counts[verdict]++
	}
	if len(files) > 1 {
		var parts []string
		for _, k := range []string{"keep", "route", "redirect", "drop", "quarantine", "leave", "broke"} {
			if counts[k] > 0 {
				parts = append(parts, fmt.Sprintf("%d %s", counts[k], k))
			}
		}
		fmt.Fprintf(stdout, "\n%d messages: %s\n", len(files), strings.Join(parts, ", "))
	}
	if broke > 0 {
		return exitFailed
	}
	return exitOK
}

func choosePipeline(cfg *config.Config, name string) (*config.Pipeline, error) {
	var names []string
	for _, p := range cfg.Pipelines {
		names = append(names, p.Name)
	}
	if name == "" {
		if len(cfg.Pipelines) == 1 {
			return cfg.Pipelines[0], nil
		}
		return nil, fmt.Errorf("%s has %d pipelines; choose one with --pipeline (%s)", cfg.Path, len(names), strings.Join(names, ", "))
	}
	if p := cfg.Pipeline(name); p != nil {
		return p, nil
	}
	return nil, fmt.Errorf("pipeline %q is not defined in %s; defined: %s", name, cfg.Path, strings.Join(names, ", "))
}

// messageFiles expands directories into the regular files under them.
func messageFiles(args []string) ([]string, error) {
	var out []string
	for _, a := range args {
		st, err := os.Stat(a)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			out = append(out, a)
			continue
		}
		var found []string
		err = filepath.WalkDir(a, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.Type().IsRegular() && !strings.HasPrefix(d.Name(), ".") {
				found = append(found, p)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		sort.Strings(found)
		out = append(out, found...)
	}
	return out, nil
}

// testOne runs the chain on one file and prints what it would do. It
// returns the verdict's name, or the error a script broke with.
func testOne(w io.Writer, chain *engine.Chain, path string, defaultOutputs []string) (string, error) {
	fmt.Fprintf(w, "== %s\n", path)
	f, err := os.Open(path)
	if err != nil {
		fmt.Fprintf(w, "   error:      %v\n", err)
		return "", err
	}
	msg, err := message.Read(f, message.Source{Input: "test", ID: filepath.Base(path)}, message.DefaultSpool)
	f.Close()
	if err != nil {
		fmt.Fprintf(w, "   error:      %v\n", err)
		return "", err
	}
	defer msg.Close()
	if msg.HeaderErr != nil {
		fmt.Fprintf(w, "   warning:    header could not be parsed (%s); it flows on untouched\n", oneLine(msg.HeaderErr.Error()))
	}
	before := fieldLines(msg.Header)
	sender := msg.Envelope.Sender
	sizeBefore := msg.Size()

	v, by, err := chain.Run(context.Background(), msg)
	if err != nil {
		fmt.Fprintf(w, "   verdict:    quarantine (script %s broke: %v)\n", by, err)
		return "", err
	}
	name := v.Action.String()
	switch {
	case v.Action != plugin.ActionKeep:
	case v.Outputs != nil:
		name = "route"
	case len(msg.Envelope.Recipients) > 0:
		name = "redirect"
	}
	line := name
	if by != "" {
		line += " (by " + by + ")"
	}
	if v.Reason != "" {
		line += ": " + v.Reason
	}
	fmt.Fprintf(w, "   verdict:    %s\n", line)
	if v.Action == plugin.ActionKeep || v.Action == plugin.ActionRoute || v.Action == plugin.ActionRedirect {
		outputs := defaultOutputs
		if v.Outputs != nil {
			outputs = v.Outputs
		}
		none := "(none: it would be quarantined)"
		if defaultOutputs == nil {
			none = "(the pipeline's outputs)"
		}
		fmt.Fprintf(w, "   outputs:    %s\n", listOr(outputs, none))
		fmt.Fprintf(w, "   recipients: %s\n", listOr(msg.Envelope.Recipients, "(each output's own)"))
		if msg.Envelope.Sender != sender {
			fmt.Fprintf(w, "   sender:     %s\n", msg.Envelope.Sender)
		}
	}
	for _, g := range v.Generated {
		printGenerated(w, g)
	}
	if msg.BodyChanged() {
		printBody(w, msg, sizeBefore)
	}
	after := fieldLines(msg.Header)
	diff := diffLines(before, after)
	if len(diff) == 0 {
		fmt.Fprintln(w, "   header:     unchanged")
	} else {
		fmt.Fprintln(w, "   header:")
		for _, d := range diff {
			fmt.Fprintf(w, "     %s\n", d)
		}
	}
	return name, nil
}

// printBody shows a body a script changed (a footer, an attachment
// removed): each part, and the end of each text part as a reader sees it.
func printBody(w io.Writer, msg *message.Message, sizeBefore int64) {
	fmt.Fprintf(w, "   body:       changed (%d → %d bytes)\n", sizeBefore, msg.Size())
	ent, err := gomessage.Read(msg.Reader())
	if ent == nil {
		fmt.Fprintf(w, "     (unreadable: %v)\n", err)
		return
	}
	n := 0
	ent.Walk(func(_ []int, part *gomessage.Entity, _ error) error {
		t, _, _ := part.Header.ContentType()
		if strings.HasPrefix(t, "multipart/") {
			return nil
		}
		n++
		fmt.Fprintf(w, "     part %d: %s\n", n, t)
		if !strings.HasPrefix(t, "text/") {
			return nil
		}
		b, _ := io.ReadAll(io.LimitReader(part.Body, 1<<20))
		lines := strings.Split(strings.TrimRight(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n"), "\n")
		for _, l := range lines[max(0, len(lines)-3):] {
			fmt.Fprintf(w, "     | %s\n", l)
		}
		return nil
	})
}

// printGenerated shows a message a script generated (vacation{},
// notify{}): what run would send, and through which output. The Date is
// left out, so that the output can be compared from one day to the next.
func printGenerated(w io.Writer, g plugin.Generated) {
	m := g.Message
	sender := m.Envelope.Sender
	if sender == "" {
		sender = "(the output's)"
	}
	fmt.Fprintf(w, "   generated:  %s through output %s, from %s to %s\n", g.Name, g.Output, sender, strings.Join(m.Envelope.Recipients, ", "))
	for _, line := range fieldLines(m.Header) {
		if !strings.HasPrefix(line, "Date:") {
			fmt.Fprintf(w, "     %s\n", line)
		}
	}
	body, err := io.ReadAll(quotedprintable.NewReader(m.Body()))
	if err != nil {
		body, _ = io.ReadAll(m.Body())
	}
	for _, line := range strings.Split(strings.TrimRight(strings.ReplaceAll(string(body), "\r\n", "\n"), "\n"), "\n") {
		fmt.Fprintf(w, "     | %s\n", line)
	}
}

func listOr(xs []string, none string) string {
	if len(xs) == 0 {
		return none
	}
	return strings.Join(xs, ", ")
}

// fieldLines renders each header field as one line, as it would be
// written, continuation lines indented under it.
func fieldLines(h message.Header) []string {
	out := h.Lines()
	for i, s := range out {
		out[i] = strings.NewReplacer("\r\n", "\n     ", "\n", "\n     ", "\r", "\n     ").Replace(s)
	}
	return out
}

// diffLines is a line diff: "- " for removed lines, "+ " for added ones.
// The lines both share at the start and the end are taken off first (a
// script edits a few fields of a header that may have 10,000), and the rest
// is diffed by longest common subsequence while that stays small; past
// that, the differing middle is shown as removed, then added.
func diffLines(a, b []string) []string {
	pre := 0
	for pre < len(a) && pre < len(b) && a[pre] == b[pre] {
		pre++
	}
	a, b = a[pre:], b[pre:]
	suf := 0
	for suf < len(a) && suf < len(b) && a[len(a)-1-suf] == b[len(b)-1-suf] {
		suf++
	}
	a, b = a[:len(a)-suf], b[:len(b)-suf]
	n, m := len(a), len(b)
	var out []string
	if n*m > 1<<20 {
		for _, l := range a {
			out = append(out, "- "+l)
		}
		for _, l := range b {
			out = append(out, "+ "+l)
		}
		return out
	}
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && a[i] == b[j]:
			i, j = i+1, j+1
		case i < n && (j == m || lcs[i+1][j] >= lcs[i][j+1]):
			out = append(out, "- "+a[i])
			i++
		default:
			out = append(out, "+ "+b[j])
			j++
		}
	}
	return out
}
