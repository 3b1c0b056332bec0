package smtpd

import (
	"os"
	"path/filepath"
	"time"

	"github.com/mailflow/mailflow/internal/fsync"
)

// Creating a file was 30% of a client's wait for its 250: on a
// file system busy syncing (every message syncs its file, the journal and
// new/), a create waits for the journal. So the spool keeps blankAhead
// empty files made ahead in new/, each with the sync of new/ that began
// after it was made under way or done, and a message for new/ takes one
// (wait/ is for after_delivery, rarer: its files are made when needed).
// A blank file has no head in the journal: should mailflow stop without
// removing it, start-up removes it as a file never finished.

// blankAhead is how many blank files are kept ready.
const blankAhead = 16

// blank is a file made ahead.
type blank struct {
	id string
	f  *os.File
	// synced gets the error of the sync of the file's directory that
	// began once the file was made.
	synced chan error
}

// makeFile makes an empty file in the spool's directory dir and starts
// the sync of that directory (one sync for the files made meanwhile).
func (s *spool) makeFile(dir string, syncer *fsync.Group) (*blank, error) {
	id := s.newID()
	f, err := os.OpenFile(filepath.Join(s.dir, dir, id), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	b := &blank{id: id, f: f, synced: make(chan error, 1)}
	syncDir := s.syncDir
	go func() { b.synced <- syncDir(syncer) }()
	return b, nil
}

// takeBlank returns a blank file in new/, if one is ready.
func (s *spool) takeBlank() *blank {
	select {
	case b := <-s.blanks:
		return b
	default:
		return nil
	}
}

// fill keeps blank files ready in new/ until stopFilling.
func (s *spool) fill() {
	defer close(s.fillDone)
	for {
		b, err := s.makeFile("new", &s.newSync)
		if err != nil {
			// The disk is full, say: a message makes its own file, and
			// fails as it would.
			select {
			case <-s.stopFill:
				return
			case <-time.After(time.Second):
				continue
			}
		}
		select {
		case s.blanks <- b:
		case <-s.stopFill:
			s.discard(b)
			return
		}
	}
}

// discard removes a blank file not used.
func (s *spool) discard(b *blank) {
	b.f.Close()
	os.Remove(filepath.Join(s.dir, "new", b.id))
}

// startFilling starts keeping blank files ready.
func (s *spool) startFilling() {
	s.blanks = make(chan *blank, blankAhead)
	s.stopFill, s.fillDone = make(chan struct{}), make(chan struct{})
	go s.fill()
}

// stopFilling stops making blank files and removes those not used.
func (s *spool) stopFilling() {
	close(s.stopFill)
	<-s.fillDone
	for {
		select {
		case b := <-s.blanks:
			s.discard(b)
		default:
			return
		}
	}
}
