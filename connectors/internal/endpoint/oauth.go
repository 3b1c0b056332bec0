package endpoint

import (
	"context"

	"github.com/mailflow/mailflow/connectors/internal/sasl"
)

// LoginOAuth logs in with an access token (auth = "oauth2"): auth runs the
// protocol's AUTH or AUTHENTICATE with the mechanism given, OAUTHBEARER
// where the server offers it (bearer), else XOAUTH2. A token the server
// refuses (refused says which errors are refusals, as against a broken
// connection) may have been revoked or cut short: a fresh one is asked for
// and tried once more. It returns the last mechanism tried, whose refusal
// (sasl.OAuthRefused) tells why, and auth's error, or the token source's
// (which says how to log in again); a connector tells a final refusal by
// refused(err).
func (s *Settings) LoginOAuth(ctx context.Context, bearer bool, auth func(sasl.Mechanism) error, refused func(error) bool) (sasl.Mechanism, error) {
	name := "XOAUTH2"
	if bearer {
		name = "OAUTHBEARER"
	}
	for try := 0; ; try++ {
		tok, err := s.tokens.Token(ctx)
		if err != nil {
			return nil, err
		}
		m, err := sasl.New(name, s.Username, tok)
		if err != nil {
			return nil, err
		}
		err = auth(m)
		if err == nil || try == 1 || !refused(err) {
			return m, err
		}
		s.tokens.Invalidate()
	}
}
