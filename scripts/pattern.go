package scripts

import (
	"context"
	"fmt"
	"strings"
)

// Lua's string patterns (string.find, match, gmatch, gsub), matched by
// mailflow rather than by gopher-lua, so that a match is bounded: a
// backtracking pattern such as string.rep("a*", 30) .. "b" takes time
// exponential in its length, and gopher-lua's matcher never looks at the
// call's deadline. This one counts its steps and, every few thousand,
// asks the state's context, which the watchdog cancels past
// script_timeout: the call then fails like any other runaway script.
// The semantics are Lua 5.1's, as gopher-lua's are.

const (
	maxCaptures    = 32
	maxMatchDepth  = 200 // nested match calls, as Lua's MAXCCALLS
	checkEvery     = 4096
	capUnfinished  = -1
	capPosition    = -2
	patternEscape  = '%'
	patternSpecial = "^$*+?.([%-"
)

// patternError is a malformed pattern or a capture misused: a Lua error.
type patternError struct{ msg string }

// patternStopped is the context's end during a match.
type patternStopped struct{ err error }

type capture struct{ init, len int }

// matcher is one match of a pattern against a subject.
type matcher struct {
	src, pat string
	level    int
	capture  [maxCaptures]capture
	depth    int
	steps    int
	ctx      context.Context
}

func (m *matcher) fail(format string, args ...any) {
	panic(patternError{fmt.Sprintf(format, args...)})
}

// step counts one step of work and, now and then, asks the context.
func (m *matcher) step() {
	m.steps++
	if m.steps%checkEvery == 0 && m.ctx != nil {
		if err := m.ctx.Err(); err != nil {
			panic(patternStopped{err})
		}
	}
}

// classEnd is the index just after the single-character class at p.
func (m *matcher) classEnd(p int) int {
	pat := m.pat
	c := pat[p]
	p++
	switch c {
	case patternEscape:
		if p >= len(pat) {
			m.fail("malformed pattern (ends with '%%')")
		}
		return p + 1
	case '[':
		if p < len(pat) && pat[p] == '^' {
			p++
		}
		for {
			// Look for a ']'; the first character of the set may be one.
			if p >= len(pat) {
				m.fail("malformed pattern (missing ']')")
			}
			c := pat[p]
			p++
			if c == patternEscape {
				if p >= len(pat) {
					m.fail("malformed pattern (missing ']')")
				}
				p++
			}
			if p < len(pat) && pat[p] == ']' {
				return p + 1
			}
			if p >= len(pat) {
				m.fail("malformed pattern (missing ']')")
			}
		}
	}
	return p
}

func isalpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isdigit(c byte) bool { return c >= '0' && c <= '9' }
func islower(c byte) bool { return c >= 'a' && c <= 'z' }
func isupper(c byte) bool { return c >= 'A' && c <= 'Z' }
func isspace(c byte) bool { return c == ' ' || c >= '\t' && c <= '\r' }
func iscntrl(c byte) bool { return c < 32 || c == 127 }
func ispunct(c byte) bool { return c > 32 && c < 127 && !isalpha(c) && !isdigit(c) }
func isxdigit(c byte) bool {
	return isdigit(c) || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// matchClass reports whether c is in the class %cl.
func matchClass(c, cl byte) bool {
	var res bool
	switch cl | 0x20 {
	case 'a':
		res = isalpha(c)
	case 'c':
		res = iscntrl(c)
	case 'd':
		res = isdigit(c)
	case 'l':
		res = islower(c)
	case 'p':
		res = ispunct(c)
	case 's':
		res = isspace(c)
	case 'u':
		res = isupper(c)
	case 'w':
		res = isalpha(c) || isdigit(c)
	case 'x':
		res = isxdigit(c)
	default:
		return cl == c
	}
	if isupper(cl) {
		return !res
	}
	return res
}

// matchBracketClass: c against the set from p ('[') to ec (its ']').
func (m *matcher) matchBracketClass(c byte, p, ec int) bool {
	pat := m.pat
	sig := true
	if pat[p+1] == '^' {
		sig = false
		p++
	}
	for p++; p < ec; p++ {
		switch {
		case pat[p] == patternEscape:
			p++
			if matchClass(c, pat[p]) {
				return sig
			}
		case p+2 < ec && pat[p+1] == '-':
			if pat[p] <= c && c <= pat[p+2] {
				return sig
			}
			p += 2
		case pat[p] == c:
			return sig
		}
	}
	return !sig
}

// singleMatch: the subject byte at s against the class from p to ep.
func (m *matcher) singleMatch(s, p, ep int) bool {
	if s >= len(m.src) {
		return false
	}
	c := m.src[s]
	switch m.pat[p] {
	case '.':
		return true
	case patternEscape:
		return matchClass(c, m.pat[p+1])
	case '[':
		return m.matchBracketClass(c, p, ep-1)
	}
	return m.pat[p] == c
}

func (m *matcher) matchBalance(s, p int) int {
	if p+1 >= len(m.pat) {
		m.fail("missing arguments to '%%b'")
	}
	if s >= len(m.src) || m.src[s] != m.pat[p] {
		return -1
	}
	b, e := m.pat[p], m.pat[p+1]
	cont := 1
	for s++; s < len(m.src); s++ {
		m.step()
		switch m.src[s] {
		case e:
			cont--
			if cont == 0 {
				return s + 1
			}
		case b:
			cont++
		}
	}
	return -1
}

func (m *matcher) maxExpand(s, p, ep int) int {
	i := 0
	for m.singleMatch(s+i, p, ep) {
		m.step()
		i++
	}
	// Try with the longest run, then shorter ones.
	for ; i >= 0; i-- {
		if r := m.match(s+i, ep+1); r != -1 {
			return r
		}
	}
	return -1
}

func (m *matcher) minExpand(s, p, ep int) int {
	for {
		if r := m.match(s, ep+1); r != -1 {
			return r
		}
		if !m.singleMatch(s, p, ep) {
			return -1
		}
		s++
	}
}

func (m *matcher) startCapture(s, p, what int) int {
	if m.level >= maxCaptures {
		m.fail("too many captures")
	}
	m.capture[m.level] = capture{init: s, len: what}
	m.level++
	r := m.match(s, p)
	if r == -1 {
		m.level-- // undo the capture
	}
	return r
}

func (m *matcher) endCapture(s, p int) int {
	l := m.captureToClose()
	m.capture[l].len = s - m.capture[l].init
	r := m.match(s, p)
	if r == -1 {
		m.capture[l].len = capUnfinished
	}
	return r
}

func (m *matcher) captureToClose() int {
	for l := m.level - 1; l >= 0; l-- {
		if m.capture[l].len == capUnfinished {
			return l
		}
	}
	m.fail("invalid pattern capture")
	return 0
}

func (m *matcher) checkCapture(c byte) int {
	l := int(c - '1')
	if l < 0 || l >= m.level || m.capture[l].len == capUnfinished {
		m.fail("invalid capture index %%%d", l+1)
	}
	return l
}

func (m *matcher) matchCapture(s int, c byte) int {
	l := m.checkCapture(c)
	cp := m.capture[l]
	capStr := m.src[cp.init : cp.init+cp.len]
	if len(m.src)-s >= cp.len && m.src[s:s+cp.len] == capStr {
		return s + cp.len
	}
	return -1
}

// match tries the pattern from p at subject index s; it returns the end
// of the match, or -1.
func (m *matcher) match(s, p int) int {
	m.depth++
	if m.depth > maxMatchDepth {
		m.fail("pattern too complex")
	}
	defer func() { m.depth-- }()
	for {
		m.step()
		if p >= len(m.pat) {
			return s
		}
		switch m.pat[p] {
		case '(':
			if p+1 < len(m.pat) && m.pat[p+1] == ')' {
				return m.startCapture(s, p+2, capPosition)
			}
			return m.startCapture(s, p+1, capUnfinished)
		case ')':
			return m.endCapture(s, p+1)
		case '$':
			if p+1 == len(m.pat) {
				if s == len(m.src) {
					return s
				}
				return -1
			}
		case patternEscape:
			if p+1 < len(m.pat) {
				switch c := m.pat[p+1]; {
				case c == 'b':
					s = m.matchBalance(s, p+2)
					if s == -1 {
						return -1
					}
					p += 4
					continue
				case c == 'f':
					p += 2
					if p >= len(m.pat) || m.pat[p] != '[' {
						m.fail("missing '[' after '%%f' in pattern")
					}
					ep := m.classEnd(p)
					var prev byte
					if s > 0 {
						prev = m.src[s-1]
					}
					var cur byte
					if s < len(m.src) {
						cur = m.src[s]
					}
					if m.matchBracketClass(prev, p, ep-1) || !m.matchBracketClass(cur, p, ep-1) {
						return -1
					}
					p = ep
					continue
				case isdigit(c):
					s = m.matchCapture(s, c)
					if s == -1 {
						return -1
					}
					p += 2
					continue
				}
			}
		}
		// The default: a single-character class, maybe with a quantifier.
		ep := m.classEnd(p)
		ok := m.singleMatch(s, p, ep)
		var q byte
		if ep < len(m.pat) {
			q = m.pat[ep]
		}
		switch q {
		case '?':
			if ok {
				if r := m.match(s+1, ep+1); r != -1 {
					return r
				}
			}
			p = ep + 1
			continue
		case '*':
			return m.maxExpand(s, p, ep)
		case '+':
			if !ok {
				return -1
			}
			return m.maxExpand(s+1, p, ep)
		case '-':
			return m.minExpand(s, p, ep)
		}
		if !ok {
			return -1
		}
		s, p = s+1, ep
	}
}

// oneCapture is capture i of a match from s to e: a string, or a position
// (a number, 1-based), or the whole match when the pattern has none.
func (m *matcher) oneCapture(i, s, e int) any {
	if i >= m.level {
		if i == 0 {
			return m.src[s:e]
		}
		m.fail("invalid capture index")
	}
	c := m.capture[i]
	switch c.len {
	case capUnfinished:
		m.fail("unfinished capture")
	case capPosition:
		return c.init + 1
	}
	return m.src[c.init : c.init+c.len]
}

// captures are the match's captures (the whole match when it has none and
// whole is set).
func (m *matcher) captures(s, e int, whole bool) []any {
	n := m.level
	if n == 0 && whole {
		n = 1
	}
	out := make([]any, n)
	for i := range n {
		out[i] = m.oneCapture(i, s, e)
	}
	return out
}

// noSpecials reports whether a pattern is a plain string.
func noSpecials(p string) bool { return !strings.ContainsAny(p, patternSpecial) }
