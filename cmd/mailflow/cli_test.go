package main

import (
	"bufio"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// commands are every command a user can type, as "mailflow migrate
// batch", with the command itself.
func commands() map[string]*cobra.Command {
	all := map[string]*cobra.Command{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			if sub.Hidden || sub.Name() == "help" {
				continue
			}
			all[sub.CommandPath()] = sub
			walk(sub)
		}
	}
	root := newRoot(&globals{})
	root.InitDefaultCompletionCmd() // cobra adds it only when it runs
	walk(root)
	return all
}

// Every command takes the global flags before and after its name, and its
// help lists every option it has: the CLI that drifted from its README
// ("worker --log-format json" refused, "quarantine --help" listing no
// options) cannot drift again. Through the built binary, as a user types.
func TestEveryCommandTakesGlobalFlagsBothWaysAndListsItsOptions(t *testing.T) {
	for path, cmd := range commands() {
		words := strings.Fields(path)[1:]
		for _, args := range [][]string{
			append(append([]string{}, words...), "--log-format", "json", "--log-level", "debug", "--help"),
			append([]string{"--log-format", "json", "--log-level=debug"}, append(words, "--help")...),
		} {
			r := mailflow(t, args...)
			if r.code != 0 || !strings.HasPrefix(r.stdout, "Usage: "+path) {
				t.Errorf("mailflow %s: exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
				continue
			}
			cmd.LocalFlags().VisitAll(func(f *pflag.Flag) {
				if !f.Hidden && !strings.Contains(r.stdout, "--"+f.Name) {
					t.Errorf("mailflow %s --help does not list --%s", strings.Join(words, " "), f.Name)
				}
			})
			for _, global := range []string{"--config", "--log-format", "--log-level"} {
				if !strings.Contains(r.stdout, global) {
					t.Errorf("mailflow %s --help does not list %s", strings.Join(words, " "), global)
				}
			}
		}
	}
}

// The exit codes are one table for every command: 2 for bad usage,
// whatever the command.
func TestBadUsageExitsTwo(t *testing.T) {
	for _, args := range [][]string{
		{"frobnicate"},
		{"run", "--frobnicate"},
		{"worker", "--log-format", "xml"},
		{"migrate", "status", "--log-level", "loud"},
		{"quarantine", "show"},
		{"check", "extra-argument"},
	} {
		if r := mailflow(t, args...); r.code != exitConfig || r.stderr == "" {
			t.Errorf("mailflow %s: exit %d, stderr %q; want 2 and a reason", strings.Join(args, " "), r.code, r.stderr)
		}
	}
}

// README's table of commands names every command there is, and nothing
// that is not one: it is checked against the command tree, so that a new
// command (worker, migrate status) cannot be left out of it again.
func TestREADMECommandsTableMatchesTheCommands(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(readme), "\n## Commands\n")
	if !ok {
		t.Fatal(`README has no "## Commands" section`)
	}
	table, _, _ = strings.Cut(table, "\n## ")
	// A row starts "| `mailflow VERB [SUBVERB|SUBVERB...] ...` |".
	row := regexp.MustCompile("(?m)^\\| `mailflow ([a-z]+)((?: [a-z]+(?:\\\\\\|[a-z]+)*)?)")
	documented := map[string]bool{}
	for _, m := range row.FindAllStringSubmatch(table, -1) {
		documented["mailflow "+m[1]] = true
		for _, sub := range strings.Split(strings.TrimSpace(strings.ReplaceAll(m[2], `\|`, "|")), "|") {
			if sub != "" {
				documented["mailflow "+m[1]+" "+sub] = true
			}
		}
	}
	all := commands()
	for path, cmd := range all {
		// A command with sub-commands is documented by them.
		if cmd.HasAvailableSubCommands() {
			continue
		}
		if !documented[path] {
			t.Errorf("README's Commands table does not have %s", path)
		}
	}
	var unknown []string
	for path := range documented {
		if all[path] == nil {
			unknown = append(unknown, path)
		}
	}
	slices.Sort(unknown)
	for _, path := range unknown {
		// "mailflow migrate --from …" documents migrate; a row's second
		// word may be an argument ("test MSG") only if the verb has no
		// sub-commands.
		if parent := path[:strings.LastIndexByte(path, ' ')]; all[parent] != nil && !all[parent].HasAvailableSubCommands() {
			continue
		}
		t.Errorf("README's Commands table has %s, which is no command", path)
	}
}

// A worker whose NATS does not answer says so at once, attempt by
// attempt, instead of printing nothing until it gives up a minute later.
func TestWorkerTellsOfItsAttemptsToReachNATS(t *testing.T) {
	cmd := exec.Command(binary, "worker", "--queue", "nats://127.0.0.1:1", "--state", t.TempDir())
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	timeout := time.After(20 * time.Second)
	for seen := 0; seen < 2; {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatal("the worker ended without saying it was trying NATS")
			}
			if strings.Contains(line, "NATS") && strings.Contains(line, "127.0.0.1:1") {
				seen++ // "connecting to NATS", then "does not answer yet"
			}
		case <-timeout:
			t.Fatal("no word of the attempts to reach NATS in 20 s")
		}
	}
}
