package mbox

import (
	"testing"

	"github.com/mailflow/mailflow/engine/message"
)

// headerIdentity names every header as message.HeaderIdentity does, the
// engine's own naming of a fetched message.
func FuzzHeaderIdentityIsTheEngines(f *testing.F) {
	for _, b := range []string{
		"Message-ID: <a@b>\r\nSubject: x\r\n\r\n",
		"Message-Id:   <a@b>  \n\n",
		"Message-ID:\n <a@b>\n\n",
		"Subject: x\nMessage-ID: <a@b>\n\n",
		"Subject: x\n\n",
		"no header\nMessage-ID: <a@b>\n\n",
		"Subject: x\nMessage-ID: <>\n\n",
		"message-id: a@b\n\n",
		"Message-ID: <first@b>\nMessage-ID: <second@b>\n\n",
		" Message-ID: <a@b>\n\n",
		"Message-ID : <a@b>\n\n",
		"X: y\nMessage-ID: <a@b> (comment)\n\n",
		"",
	} {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, block []byte) {
		if got, want := headerIdentity(block, 1234), message.HeaderIdentity(block, 1234); got != want {
			t.Fatalf("%q: %q, the engine's %q", block, got, want)
		}
	})
}
