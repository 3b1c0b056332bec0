package smtpd

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	smtp "github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"
)

// AUTH PLAIN and LOGIN for a submission-style listener, against a users
// file of bcrypt hashes, offered over TLS only (unless
// allow_insecure_auth). Failed logins are slowed (auth_failure_delay) and
// counted per client address; past auth_failure_limit that address may
// not try again until the period is over, and is hung up on.

// users is a users file: "name:bcrypt-hash" lines (htpasswd -B writes
// them), "#" comments and blank lines.
type users struct {
	hashes map[string][]byte
}

// decoy is compared against when a user is unknown, so that a login for a
// name that does not exist takes as long as one that does. It is the
// bcrypt hash of "mailflow decoy" at bcrypt.DefaultCost, written out:
// making it at start took a tenth of a second of CPU from every mailflow
// command, a migration's pass over an unchanged mailbox included.
var decoy = []byte("$2a$10$xPJOkr5p8pBd6insZ/qLY.CaXssw9cBoy6XH0SYDKpae/y7GCHlc.")

func loadUsers(path string) (*users, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	u := &users{hashes: map[string][]byte{}}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, hash, ok := strings.Cut(line, ":")
		if !ok || name == "" {
			return nil, fmt.Errorf("%s:%d: want name:bcrypt-hash", path, n)
		}
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return nil, fmt.Errorf("%s:%d: the hash of %q is not a bcrypt hash (make one with htpasswd -nB %s)", path, n, name, name)
		}
		u.hashes[name] = []byte(hash)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return u, nil
}

// check reports whether password is name's.
func (u *users) check(name, password string) bool {
	hash, ok := u.hashes[name]
	if !ok {
		bcrypt.CompareHashAndPassword(decoy, []byte(password))
		return false
	}
	return bcrypt.CompareHashAndPassword(hash, []byte(password)) == nil
}

// AuthMechanisms implements smtp.AuthSession.
func (se *session) AuthMechanisms() []string {
	if se.in.users == nil {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

// Auth implements smtp.AuthSession.
func (se *session) Auth(mech string) (sasl.Server, error) {
	if se.in.users == nil {
		return nil, smtp.ErrAuthUnsupported
	}
	if se.s.l.clients.authLocked(se.raw.addr, se.in.authFails) {
		se.in.log.Warn("AUTH refused: too many failed logins from this client", "client", se.raw.addr)
		se.raw.hangUp()
		return nil, &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Error: too many failed logins, try again later"}
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, username, password string) error {
			if identity != "" && identity != username {
				return se.authFailed(username)
			}
			return se.login(username, password)
		}), nil
	case sasl.Login:
		return &loginServer{login: se.login}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

// login checks a user's password.
func (se *session) login(username, password string) error {
	if se.in.users.check(username, password) {
		se.auth = username
		se.in.log.Info("authenticated", "client", se.raw.addr, "user", username)
		return nil
	}
	return se.authFailed(username)
}

// authFailed counts a failed login, slows it down, and hangs up on a
// client past auth_failure_limit.
func (se *session) authFailed(username string) error {
	ok := se.s.l.clients.authFailed(se.raw.addr, se.in.authFails)
	se.in.log.Warn("AUTH failed", "client", se.raw.addr, "user", username)
	time.Sleep(se.in.authFailureDelay)
	if !ok {
		se.raw.hangUp()
		return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Error: too many failed logins, try again later"}
	}
	return smtp.ErrAuthFailed
}

// loginServer is the server side of the LOGIN mechanism (a user name and
// a password, each asked for; go-sasl has only its client).
type loginServer struct {
	login    func(username, password string) error
	username string
	step     int
}

func (l *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch l.step {
	case 0:
		l.step = 1
		if response == nil {
			return []byte("Username:"), false, nil
		}
		fallthrough // an initial response is the user name
	case 1:
		l.username, l.step = string(response), 2
		return []byte("Password:"), false, nil
	case 2:
		l.step = 3
		return nil, true, l.login(l.username, string(response))
	}
	return nil, true, errors.New("unexpected client response")
}
