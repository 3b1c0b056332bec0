package engine

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Quarantine keeps messages that could not be delivered and must not be
// lost: an output refused them for good, or a filter broke on them. Each
// entry is the original .eml, exactly as the source gave it, plus a JSON
// record of why, when and from where.
type Quarantine struct {
	dir string
}

// QuarantineEntry is the record kept beside a quarantined message.
type QuarantineEntry struct {
	ID        string    `json:"id"`
	Reason    string    `json:"reason"`
	At        time.Time `json:"at"`
	Input     string    `json:"input"`
	SourceID  string    `json:"source_id"`
	Pipeline  string    `json:"pipeline"`
	MessageID string    `json:"message_id,omitempty"`
	Size      int64     `json:"size"`
}

// OpenQuarantine uses dir (creating it) for the quarantine.
func OpenQuarantine(dir string) (*Quarantine, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return &Quarantine{dir: dir}, nil
}

// Dir is where the quarantine keeps its files.
func (q *Quarantine) Dir() string { return q.dir }

// Put writes msg's original bytes and the record, each synced and renamed
// into place, so that a crash leaves either a whole entry or none.
func (q *Quarantine) Put(msg *Message, pipeline, reason string) (QuarantineEntry, error) {
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	e := QuarantineEntry{
		ID:        time.Now().UTC().Format("20060102T150405") + "-" + hex.EncodeToString(rnd[:]),
		Reason:    reason,
		At:        time.Now().UTC(),
		Input:     msg.Source.Input,
		SourceID:  msg.Source.ID,
		Pipeline:  pipeline,
		MessageID: msg.MessageID(),
		Size:      msg.OriginalSize(),
	}
	if err := writeFileSynced(filepath.Join(q.dir, e.ID+".eml"), msg.Original()); err != nil {
		return e, fmt.Errorf("quarantine: %w", err)
	}
	rec, _ := json.MarshalIndent(e, "", "  ")
	if err := writeFileSynced(filepath.Join(q.dir, e.ID+".json"), strings.NewReader(string(rec)+"\n")); err != nil {
		return e, fmt.Errorf("quarantine: %w", err)
	}
	return e, syncDir(q.dir)
}

// List returns every entry, oldest first.
func (q *Quarantine) List() ([]QuarantineEntry, error) {
	names, err := filepath.Glob(filepath.Join(q.dir, "*.json"))
	if err != nil {
		return nil, err
	}
	var out []QuarantineEntry
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			return nil, err
		}
		var e QuarantineEntry
		if err := json.Unmarshal(b, &e); err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Get returns an entry and its message.
func (q *Quarantine) Get(id string) (QuarantineEntry, *Message, error) {
	var e QuarantineEntry
	if strings.ContainsAny(id, `/\`) || id == "" {
		return e, nil, errors.New("bad quarantine id")
	}
	b, err := os.ReadFile(filepath.Join(q.dir, id+".json"))
	if err != nil {
		return e, nil, fmt.Errorf("no quarantined message %q: %w", id, err)
	}
	if err := json.Unmarshal(b, &e); err != nil {
		return e, nil, err
	}
	f, err := os.Open(filepath.Join(q.dir, id+".eml"))
	if err != nil {
		return e, nil, err
	}
	defer f.Close()
	msg, err := ReadMessage(f, Source{Input: e.Input, ID: "quarantine:" + e.ID}, DefaultSpool)
	return e, msg, err
}

// Remove deletes an entry.
func (q *Quarantine) Remove(id string) error {
	if err := os.Remove(filepath.Join(q.dir, id+".eml")); err != nil {
		return err
	}
	return os.Remove(filepath.Join(q.dir, id+".json"))
}

// writeFileSynced writes r to a temporary file beside path, syncs it and
// renames it to path.
func writeFileSynced(path string, r io.Reader) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	if _, err := io.Copy(tmp, r); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
