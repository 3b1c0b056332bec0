//go:build !race

package smtpd

const raceDetector = false
