// Package spoolfile tells an output that a message it is given is, byte
// for byte, a file the smtp or lmtp input spooled: synced before its
// client heard 250, and never written again. An output that stores
// messages as files on the same file system (the Maildir output) can
// then hard-link that file instead of creating, writing and syncing a
// copy. The input keeps the file's lifetime: it adds a file once it is
// durable and removes it before it unlinks its own name; a link made
// meanwhile is a name of the output's, which outlives the spool's.
package spoolfile

import "sync"

// File is a spooled message's file.
type File struct {
	Path string
	Size int64
	// CRC is the CRC-32C (Castagnoli) of the file's bytes: an output
	// compares it with the bytes it would write before it links.
	CRC uint32
}

var files sync.Map // input + "\x00" + id → File

// Add says that input's message id is, durably, the file f.
func Add(input, id string, f File) { files.Store(input+"\x00"+id, f) }

// Remove says that the file of input's message id is going away.
func Remove(input, id string) { files.Delete(input + "\x00" + id) }

// Find returns the file of input's message id, if it has one.
func Find(input, id string) (File, bool) {
	v, ok := files.Load(input + "\x00" + id)
	if !ok {
		return File{}, false
	}
	return v.(File), true
}
