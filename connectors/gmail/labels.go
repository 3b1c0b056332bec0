package gmail

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/mailflow/mailflow/engine/plugin"
)

// systemLabels are the labels every Gmail mailbox has whose ids are their
// names, and that an import may set. (DRAFT cannot be set; SENT marks
// mail the account sent, for a migration of a Sent folder.)
var systemLabels = []string{"INBOX", "UNREAD", "STARRED", "IMPORTANT", "SPAM", "TRASH", "SENT",
	"CATEGORY_PERSONAL", "CATEGORY_SOCIAL", "CATEGORY_PROMOTIONS", "CATEGORY_UPDATES", "CATEGORY_FORUMS"}

// systemID is the id of the system label name stands for ("inbox" is
// INBOX: Gmail reserves those names whatever their case); "" when it is no
// system label.
func (o *Output) systemID(name string) string {
	return o.sysNames[strings.ToUpper(strings.TrimSpace(name))]
}

// labelCache maps label names to the ids the API wants. It is filled by
// one labels.list, the first time a name that is no system label is
// needed, and by each labels.create; a label deleted in Gmail meanwhile
// shows as an import refused for an invalid label, which empties it.
//
// labels.list gives every label in one reply, so there is nothing to
// batch; labels.create happens once per new name for the life of the
// mailbox, so a batch request (a second wire format, and the same quota
// units) would save nothing worth having.
type labelCache struct {
	mu     sync.Mutex
	listed bool
	byName map[string]string // name as Gmail has it → id
	byFold map[string]string // lower-case name → id: Gmail's names do not differ by case alone
}

func (c *labelCache) lookup(name string) (string, bool) {
	if id, ok := c.byName[name]; ok {
		return id, true
	}
	id, ok := c.byFold[strings.ToLower(name)]
	return id, ok
}

func (c *labelCache) add(name, id string) {
	c.byName[name] = id
	c.byFold[strings.ToLower(name)] = id
}

// forget drops what the cache knows, so that the next need lists again.
func (c *labelCache) forget() {
	c.mu.Lock()
	c.listed = false
	c.mu.Unlock()
}

// labelError is a label Gmail will not create. From a script's header it
// is about that message (permanent: quarantined, and sent again after the
// script is fixed); from the config it is temporary, so that a config
// mistake never drains the mailbox into the quarantine.
type labelError struct {
	name string
	err  error
}

func (e *labelError) Error() string {
	return fmt.Sprintf("gmail: the label %q cannot be created: %v", e.name, e.err)
}

func (e *labelError) Unwrap() error { return e.err }

// labelIDs resolves label names to ids, creating the labels that are
// missing (and their parents: "Work/2024" after "Work"). scripted names
// came from a script.
func (o *Output) labelIDs(ctx context.Context, names []string, scripted map[string]bool) ([]string, error) {
	ids := make([]string, len(names))
	var need []int // indexes of the names that are no system label
	for i, n := range names {
		if ids[i] = o.systemID(n); ids[i] == "" {
			need = append(need, i)
		}
	}
	if len(need) == 0 {
		return dedupe(ids), nil
	}
	if !o.can.labels {
		n := names[need[0]]
		err := fmt.Errorf("gmail: label %q needs labels.list and labels.create, which the scopes given (%s) do not allow; add %s, or use %s",
			n, strings.Join(o.Scopes, " "), ScopeLabels, ScopeModify)
		if scripted[n] {
			return nil, plugin.Permanent(err)
		}
		return nil, err
	}
	c := &o.labels
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.listed {
		if err := o.listLabels(ctx); err != nil {
			return nil, err
		}
	}
	for _, i := range need {
		id, err := o.ensureLabel(ctx, names[i])
		var le *labelError
		if errors.As(err, &le) && scripted[names[i]] {
			return nil, plugin.Permanent(err)
		}
		if err != nil {
			return nil, err
		}
		ids[i] = id
	}
	return dedupe(ids), nil
}

// listLabels fills the cache with one labels.list. c.mu is held.
func (o *Output) listLabels(ctx context.Context) error {
	resp, cancel, err := o.do(ctx, request{op: "labels.list", method: http.MethodGet,
		url: o.apiURL("/gmail/v1/users/me/labels", nil), units: unitsLabelsList})
	if err != nil {
		return o.classify(err)
	}
	var reply struct {
		Labels []struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		} `json:"labels"`
	}
	if err := readJSON(resp, cancel, &reply); err != nil {
		return fmt.Errorf("gmail labels.list: the reply is no label list: %w", err)
	}
	c := &o.labels
	c.byName, c.byFold = map[string]string{}, map[string]string{}
	for _, l := range reply.Labels {
		c.add(l.Name, l.ID)
	}
	c.listed = true
	return nil
}

// ensureLabel returns the id of the label name, creating it and any
// missing parent. c.mu is held.
func (o *Output) ensureLabel(ctx context.Context, name string) (string, error) {
	c := &o.labels
	if id, ok := c.lookup(name); ok {
		return id, nil
	}
	if i := strings.LastIndex(name, "/"); i > 0 {
		if _, err := o.ensureLabel(ctx, name[:i]); err != nil {
			return "", err
		}
	}
	body, _ := json.Marshal(map[string]string{"name": name, "labelListVisibility": "labelShow", "messageListVisibility": "show"})
	resp, cancel, err := o.do(ctx, request{op: "labels.create", method: http.MethodPost,
		url: o.apiURL("/gmail/v1/users/me/labels", nil), units: unitsLabelsCreate,
		header: http.Header{"Content-Type": {"application/json; charset=UTF-8"}},
		body:   func() io.Reader { return bytes.NewReader(body) }, size: int64(len(body))})
	var ae *APIError
	switch {
	case errors.As(err, &ae) && ae.StatusCode == http.StatusConflict:
		// Made meanwhile (by a person, another mailflow), or a name that
		// differs from one Gmail has by case only: read the list again.
		if err := o.listLabels(ctx); err != nil {
			return "", err
		}
		if id, ok := c.lookup(name); ok {
			return id, nil
		}
		return "", &labelError{name, err}
	case errors.As(err, &ae) && ae.StatusCode == http.StatusBadRequest:
		return "", &labelError{name, err}
	case err != nil:
		return "", o.classify(err)
	}
	var made struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	}
	if err := readJSON(resp, cancel, &made); err != nil || made.ID == "" {
		return "", fmt.Errorf("gmail labels.create %q: the reply has no label id (%v)", name, err)
	}
	c.add(name, made.ID)
	if made.Name != "" {
		c.add(made.Name, made.ID)
	}
	o.log.Info("label created", "label", name, "id", made.ID)
	return made.ID, nil
}

func dedupe(ids []string) []string {
	out := ids[:0]
	seen := map[string]bool{}
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}
