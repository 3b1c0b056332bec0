package engine_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/engine/config"
	"github.com/mailflow/mailflow/engine/message"
	"github.com/mailflow/mailflow/engine/plugin"
	"github.com/mailflow/mailflow/plugins"
)

// fileOutput is an output that reads a secret file at Init, as SMTP does.
type fileOutput struct {
	PasswordFile string `toml:"password_file"`

	secret string
	spool  message.SpoolOptions
	id     int64
}

var built atomic.Int64

func (o *fileOutput) Provision(env plugin.Env) error {
	o.spool = env.Spool
	o.PasswordFile = filepath.Join(env.BaseDir, o.PasswordFile)
	return nil
}

func (o *fileOutput) Init() error {
	b, err := os.ReadFile(o.PasswordFile)
	o.secret, o.id = string(b), built.Add(1)
	return err
}

func (o *fileOutput) Files() []string { return []string{o.PasswordFile} }

func (o *fileOutput) Deliver(context.Context, *message.Message, plugin.Delivery) ([]plugin.RecipientResult, error) {
	return nil, nil
}

type reloadRig struct {
	dir  string
	conf string
	e    *engine.Engine
}

func newReloadRig(t *testing.T, global string) *reloadRig {
	t.Helper()
	reg := &plugins.Registry{}
	reg.AddInput("mem", func() plugin.Input { return newMemInput(nil) })
	reg.AddOutput("fileout", func() plugin.Output { return &fileOutput{} })
	r := &reloadRig{dir: t.TempDir()}
	r.conf = filepath.Join(r.dir, "mailflow.toml")
	os.WriteFile(filepath.Join(r.dir, "secret"), []byte("one"), 0o600)
	r.write(t, global)
	cfg, err := config.Load(r.conf, reg)
	if err != nil {
		t.Fatal(err)
	}
	r.e, err = engine.Open(cfg, reg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.e.Close() })
	return r
}

func (r *reloadRig) write(t *testing.T, global string) {
	t.Helper()
	conf := fmt.Sprintf("state_dir = \"state\"\n%s\n[[input]]\nname = \"in\"\ntype = \"mem\"\npipeline = \"p\"\n[[pipeline]]\nname = \"p\"\noutputs = [\"out\"]\n[[output]]\nname = \"out\"\ntype = \"fileout\"\npassword_file = \"secret\"\n", global)
	// Saved the way editors save: a new file renamed over the old.
	tmp := r.conf + ".tmp"
	if err := os.WriteFile(tmp, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, r.conf); err != nil {
		t.Fatal(err)
	}
}

func (r *reloadRig) output() *fileOutput { return r.e.Config().Output("out").Plugin.(*fileOutput) }

func TestReloadRebuildsAPluginWhenItsFileOrAGlobalChanged(t *testing.T) {
	r := newReloadRig(t, "")
	first := r.output()
	if ok, err := r.e.Reload(); !ok || err != nil {
		t.Fatal(err)
	}
	if r.output() != first {
		t.Fatal("nothing changed, yet the output was rebuilt")
	}
	os.WriteFile(filepath.Join(r.dir, "secret"), []byte("two"), 0o600)
	if ok, err := r.e.Reload(); !ok || err != nil {
		t.Fatal(err)
	}
	if o := r.output(); o == first || o.secret != "two" {
		t.Fatalf("password_file's bytes changed, but the output kept %q", o.secret)
	}
	second := r.output()
	r.write(t, "max_message_size = 1000")
	if ok, err := r.e.Reload(); !ok || err != nil {
		t.Fatal(err)
	}
	if o := r.output(); o == second || o.spool.MaxSize != 1000 {
		t.Fatalf("a global the output reads changed, but it was not rebuilt (max %d)", o.spool.MaxSize)
	}
}

// A config saved while a reload runs is loaded too: the watcher takes the
// files' digest before it reloads, not after.
func TestSaveDuringReloadIsLoaded(t *testing.T) {
	r := newReloadRig(t, "")
	var mu sync.Mutex
	reloads := 0
	var w *config.Watcher
	reload := func() {
		mu.Lock()
		reloads++
		n := reloads
		mu.Unlock()
		if _, err := r.e.Reload(); err != nil {
			t.Error(err)
		}
		if n == 1 {
			// The user saves again after the reload read the file, before
			// the watcher is done with it.
			r.write(t, "max_message_size = 2000")
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := config.Watch(ctx, r.e.Config, slog.New(slog.NewTextHandler(io.Discard, nil)), reload)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r.write(t, "max_message_size = 1000")
	deadline := time.Now().Add(10 * time.Second)
	for r.e.Config().Spool.MaxSize != 2000 {
		if time.Now().After(deadline) {
			t.Fatalf("the save made during the reload was never loaded: max_message_size %d after %d reloads", r.e.Config().Spool.MaxSize, reloads)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A broken edit is refused with the file and line of the mistake, and the
// config that was running goes on running: its plugins are not closed or
// rebuilt, and its inputs still poll.
func TestReloadWithABrokenConfigKeepsTheRunningOne(t *testing.T) {
	r := newReloadRig(t, "")
	before := r.output()
	for _, c := range []struct{ name, global, want string }{
		{"unknown key", "max_mesage_size = 10", `mailflow.toml:2: unknown key "max_mesage_size"`},
		{"toml syntax", "max_message_size = ", "mailflow.toml:2:"},
		{"bad duration", `shutdown_timeout = "soon"`, `mailflow.toml:2: shutdown_timeout: "soon" is not a positive duration`},
	} {
		t.Run(c.name, func(t *testing.T) {
			r.write(t, c.global)
			ok, err := r.e.Reload()
			if ok || err == nil {
				t.Fatal("a broken config was taken")
			}
			if !strings.HasPrefix(err.Error(), filepath.Join(r.dir, c.want)) {
				t.Fatalf("error %q does not start with %q", err, filepath.Join(r.dir, c.want))
			}
			if r.output() != before || r.e.Config().Spool.MaxSize != 0 {
				t.Fatal("the running config was replaced")
			}
			if _, err := r.e.PollOnce(context.Background(), "in"); err != nil {
				t.Fatalf("the running config no longer polls: %v", err)
			}
		})
	}
	// Mended, it is taken.
	r.write(t, "max_message_size = 500")
	if ok, err := r.e.Reload(); !ok || err != nil || r.e.Config().Spool.MaxSize != 500 {
		t.Fatalf("the mended config was not taken: %v", err)
	}
}
