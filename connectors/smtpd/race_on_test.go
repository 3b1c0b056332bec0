//go:build race

package smtpd

// raceDetector: go-smtp reads DATA a byte at a time, which the race
// detector slows thirtyfold; tests that push a gigabyte push less.
const raceDetector = true
