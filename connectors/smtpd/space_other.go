//go:build !unix

package smtpd

// freeSpace cannot tell on this system.
func freeSpace(dir string) int64 { return -1 }
