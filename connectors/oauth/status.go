package oauth

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mailflow/mailflow/internal/human"
)

// WriteStatus writes, for each of users (by connector name), the account,
// the scopes, when the access token expires, how old the refresh token is,
// the last refresh and the last error.
func (store Store) WriteStatus(w io.Writer, users map[string]*Config) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tACCOUNT\tSCOPES\tACCESS TOKEN\tREFRESH TOKEN AGE\tLAST REFRESH\tLAST ERROR")
	names := make([]string, 0, len(users))
	for n := range users {
		names = append(names, n)
	}
	slices.Sort(names)
	now := time.Now()
	for _, n := range names {
		t, err := store.Load(n)
		switch {
		case errors.Is(err, ErrNoToken):
			fmt.Fprintf(tw, "%s\t%s\t\tnot logged in (mailflow auth login)\t\t\t\n", n, users[n].Account)
			continue
		case err != nil:
			fmt.Fprintf(tw, "%s\t%s\t\t\t\t\t%s\n", n, users[n].Account, human.Line(err.Error()))
			continue
		}
		expiry := "expired " + now.Sub(t.Expiry).Round(time.Second).String() + " ago"
		if t.Expiry.After(now) {
			expiry = "expires in " + t.Expiry.Sub(now).Round(time.Second).String()
		}
		last := "-"
		if !t.LastRefresh.IsZero() {
			last = t.LastRefresh.Local().Format(time.DateTime)
		}
		scopes, lastErr := strings.Join(t.Scopes, " "), human.Line(t.LastError)
		if lastErr == "" {
			lastErr = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n, t.Account, scopes, expiry,
			now.Sub(t.RefreshIssued).Round(time.Minute), last, lastErr)
	}
	tw.Flush()
}
