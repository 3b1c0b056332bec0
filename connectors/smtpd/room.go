package smtpd

import "fmt"

// roomFor says why the spool cannot take a message of size bytes now (0:
// the client did not say), or "" when it can. Mail is refused for now
// (452: the client keeps it and tries again) rather than taken when it
// may not fit: the spool holds max_spool_size bytes waiting for the
// pipeline (outputs down, say), or its disk has less free than one and a
// half times the largest message, as Postfix's smtpd asks of its queue.
func (in *Input) roomFor(sp *spool, size int64) string {
	if in.maxSpool > 0 && sp.size()+size > in.maxSpool {
		return fmt.Sprintf("the spool holds max_spool_size (%d bytes) of mail waiting for the pipeline", in.maxSpool)
	}
	if free := freeSpace(in.spoolDir); free >= 0 && free < in.maxSize*3/2 {
		return fmt.Sprintf("the spool's disk has %d bytes free, less than 1.5 times max_message_size", free)
	}
	return ""
}
