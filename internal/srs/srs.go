// Package srs is the Sender Rewriting Scheme as libsrs2 and postsrsd
// implement it, so that an address mailflow rewrites can be reversed by
// them and theirs by mailflow.
//
// A forwarder that sends mail on with the original envelope sender fails
// the sender domain's SPF check. SRS sends it as
//
//	SRS0=HHHH=TT=orig.example=user@forwarder.example
//
// where TT is the day (base32, modulo 1024) and HHHH the first four
// characters of the base64 HMAC-SHA1, keyed with a secret, of TT, the
// domain and the local part, all lowercased. A bounce to that address comes
// back to the forwarder, which checks the hash and the age and sends it on
// to user@orig.example. An address that is already SRS0 (mail forwarded
// twice) becomes SRS1=HHHH=first.forwarder==HHHH=TT=orig.example=user@...,
// which the second forwarder reverses to the first one's SRS0 address.
package srs

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Rewriter rewrites and reverses addresses for one domain.
type Rewriter struct {
	// Domain is the forwarder's domain: rewritten addresses are @Domain.
	Domain string
	// Secrets: the first signs; every one is accepted when reversing, so
	// that a secret can be replaced without refusing bounces in flight.
	Secrets []string
	// MaxAge is how old an SRS0 address may be when reversed; 21 days if 0.
	MaxAge time.Duration
	// Now is the clock (time.Now if nil).
	Now func() time.Time
}

const (
	hashLength = 4
	base32     = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	dayRange   = 1024 // two base32 characters of days
)

// Errors Reverse returns.
var (
	ErrNotSRS  = errors.New("srs: not an SRS address")
	ErrHash    = errors.New("srs: the hash does not match (tampered, or another forwarder's secret)")
	ErrExpired = errors.New("srs: the address is too old")
)

func (r *Rewriter) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Rewriter) maxAgeDays() int {
	if r.MaxAge <= 0 {
		return 21
	}
	return int(r.MaxAge / (24 * time.Hour))
}

// Forward rewrites sender for mail forwarded through Domain. The null
// sender ("" or "<>") is returned as it is: a bounce is never rewritten;
// so is an address already in Domain, or one without a domain.
func (r *Rewriter) Forward(sender string) (string, error) {
	if len(r.Secrets) == 0 || r.Secrets[0] == "" {
		return "", errors.New("srs: no secret")
	}
	if sender == "" || sender == "<>" {
		return sender, nil
	}
	at := strings.LastIndexByte(sender, '@')
	if at <= 0 || at == len(sender)-1 {
		return sender, nil
	}
	local, host := sender[:at], sender[at+1:]
	if strings.EqualFold(host, r.Domain) {
		return sender, nil
	}
	switch {
	case hasTag(local, "SRS0"):
		// Forwarded twice: SRS1 names the first forwarder (host) and keeps
		// its SRS0 part whole, separator included.
		rest := local[4:]
		hash := r.hash(r.Secrets[0], host, rest)
		return fmt.Sprintf("SRS1=%s=%s=%s@%s", hash, host, rest, r.Domain), nil
	case hasTag(local, "SRS1"):
		// SRS1 again: keep the first forwarder, re-sign for this one.
		parts := strings.SplitN(local[5:], "=", 3)
		if len(parts) == 3 {
			first, rest := parts[1], parts[2]
			hash := r.hash(r.Secrets[0], first, rest)
			return fmt.Sprintf("SRS1=%s=%s=%s@%s", hash, first, rest, r.Domain), nil
		}
	}
	ts := timestamp(r.now())
	hash := r.hash(r.Secrets[0], ts, host, local)
	return fmt.Sprintf("SRS0=%s=%s=%s=%s@%s", hash, ts, host, local, r.Domain), nil
}

// Reverse undoes Forward: an SRS0 address gives the original sender, an
// SRS1 address the first forwarder's SRS0 address. It checks the hash
// against every secret and, for SRS0, the age.
func (r *Rewriter) Reverse(addr string) (string, error) {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 {
		return "", ErrNotSRS
	}
	local := addr[:at]
	switch {
	case hasTag(local, "SRS0"):
		parts := strings.SplitN(local[5:], "=", 4)
		if len(parts) != 4 {
			return "", ErrNotSRS
		}
		hash, ts, host, user := parts[0], parts[1], parts[2], parts[3]
		if !r.checkHash(hash, ts, host, user) {
			return "", ErrHash
		}
		if err := r.checkTimestamp(ts); err != nil {
			return "", err
		}
		return user + "@" + host, nil
	case hasTag(local, "SRS1"):
		parts := strings.SplitN(local[5:], "=", 3)
		if len(parts) != 3 || !strings.HasPrefix(parts[2], "=") {
			return "", ErrNotSRS
		}
		hash, host, rest := parts[0], parts[1], parts[2]
		if !r.checkHash(hash, host, rest) {
			return "", ErrHash
		}
		return "SRS0" + rest + "@" + host, nil
	}
	return "", ErrNotSRS
}

// hasTag reports whether local starts with tag and a separator (libsrs2
// accepts =, + and -; and the tag in any case).
func hasTag(local, tag string) bool {
	return len(local) > 5 && strings.EqualFold(local[:4], tag) && strings.ContainsRune("=+-", rune(local[4]))
}

// hash is libsrs2's srs_hash_create: HMAC-SHA1 over the lowercased parts,
// base64, the first four characters.
func (r *Rewriter) hash(secret string, parts ...string) string {
	mac := hmac.New(sha1.New, []byte(secret))
	for _, p := range parts {
		mac.Write([]byte(strings.ToLower(p)))
	}
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))[:hashLength]
}

// checkHash compares case-insensitively, as libsrs2 does: some mail
// systems lowercase the local part.
func (r *Rewriter) checkHash(got string, parts ...string) bool {
	for _, s := range r.Secrets {
		if s != "" && hmac.Equal([]byte(strings.ToLower(r.hash(s, parts...))), []byte(strings.ToLower(got))) {
			return true
		}
	}
	return false
}

// timestamp is the day number modulo 1024 in two base32 characters.
func timestamp(t time.Time) string {
	d := int(t.Unix()/86400) % dayRange
	return string([]byte{base32[d>>5], base32[d&31]})
}

func (r *Rewriter) checkTimestamp(ts string) error {
	if len(ts) != 2 {
		return ErrNotSRS
	}
	then := 0
	for _, c := range strings.ToUpper(ts) {
		i := strings.IndexRune(base32, c)
		if i < 0 {
			return ErrNotSRS
		}
		then = then<<5 | i
	}
	now := int(r.now().Unix()/86400) % dayRange
	if now < then {
		now += dayRange // the day counter wrapped since
	}
	if now-then > r.maxAgeDays() {
		return ErrExpired
	}
	return nil
}
