package oauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"time"
)

// Token is what state_dir/tokens/NAME.json keeps for one connector. The
// refresh token is a secret: it is never logged, and the file is 0600.
type Token struct {
	AccessToken  string    `json:"access_token"`
	RefreshToken string    `json:"refresh_token"`
	Expiry       time.Time `json:"expiry"`
	Scopes       []string  `json:"scopes,omitempty"`
	Account      string    `json:"account,omitempty"` // the user the connector logs in as
	// RefreshIssued is when the refresh token was issued (at login, or by a
	// rotation): providers let unused ones lapse (Microsoft: 90 days).
	RefreshIssued time.Time `json:"refresh_issued"`
	LastRefresh   time.Time `json:"last_refresh,omitempty"`
	LastError     string    `json:"last_error,omitempty"`
}

// Store keeps the tokens of a state_dir.
type Store struct{ Dir string }

// NewStore is the token store of stateDir.
func NewStore(stateDir string) Store { return Store{Dir: filepath.Join(stateDir, "tokens")} }

var validName = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

func (s Store) path(name string) (string, error) {
	if !validName.MatchString(name) || name == "." || name == ".." {
		return "", fmt.Errorf("%q cannot name a token file", name)
	}
	return filepath.Join(s.Dir, name+".json"), nil
}

// ErrNoToken says that nobody has logged in for the connector yet.
var ErrNoToken = errors.New("no token")

// Load reads the token of connector name. A missing file is ErrNoToken; a
// file that is not a token says so, with its path.
func (s Store) Load(name string) (*Token, error) {
	p, err := s.path(name)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNoToken
	}
	if err != nil {
		return nil, err
	}
	var t Token
	if err := json.Unmarshal(b, &t); err != nil || t.AccessToken == "" && t.RefreshToken == "" {
		if err == nil {
			err = errors.New("it holds no token")
		}
		return nil, fmt.Errorf("%s is not a token file (%v); run mailflow auth login again", p, err)
	}
	return &t, nil
}

// Save writes the token of connector name: to a temporary file made 0600,
// synced, then renamed over the old one, so that a crash leaves the old
// token or the new one, never half of one.
func (s Store) Save(name string, t *Token) error {
	p, err := s.path(name)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(t, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(s.Dir, "."+name+"-*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // gone after the rename; a leftover after a failure
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, p); err != nil {
		return err
	}
	if d, err := os.Open(s.Dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// Delete removes the token of connector name (logout).
func (s Store) Delete(name string) error {
	p, err := s.path(name)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
