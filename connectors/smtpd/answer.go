package smtpd

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	smtp "github.com/emersion/go-smtp"

	"github.com/mailflow/mailflow/engine/plugin"
)

// With answer = "after_delivery" a client that sent a message waits, at
// most answer_timeout, for what the pipeline did with it, and is answered
// accordingly (Postfix's before-queue filter contract: a refusal goes back
// to the sending server, which bounces it, instead of mailflow holding
// mail it cannot deliver):
//
//	delivered, dropped, quarantined   250: mailflow has it (or chose to drop it)
//	rejected (a script's reject(), or every output refused it for good)
//	                                  5xx with the reason; the client keeps it
//	deferred, nothing delivered yet   451; the client keeps it and tries again
//	deferred, some output has it      250; mailflow finishes it from its spool
//	left by a script (leave())        451, as greylisting does
//	no outcome within answer_timeout  451; the client keeps it
//
// Whenever the client keeps the message, mailflow removes its own copy at
// once, so that it is not also delivered from the spool. An LMTP client
// is answered per recipient where an output refused some recipients and
// took the others.

// fate is what a waiting client is told: one reply for the message, or
// (LMTP) one per recipient, where perRcpt says so.
type fate struct {
	reply   *smtp.SMTPError // nil: 250
	perRcpt map[string]*smtp.SMTPError
}

// answer takes the engine's word on a spooled message (plugin.Answerer)
// to its client, if the client waits; it reports whether the client took
// a rejected message back.
func (in *Input) answer(s *spool, en *entry, a plugin.Answer) bool {
	s.mu.Lock()
	state := en.state
	if state == waiting {
		en.state = answered
	}
	s.mu.Unlock()
	log := in.log.With("id", en.id, "outcome", string(a.Outcome))
	switch state {
	case waiting:
		f, withdraw, keep, back := in.judge(a)
		if keep {
			if err := s.keep(en); err != nil {
				log.Error("could not keep a message some output has; its client is told to try again, so that output may get it twice", "err", err)
				f, withdraw = fate{reply: tempFail("4.3.0", "could not keep the message: "+err.Error())}, true
			}
		}
		if withdraw {
			s.remove([]*entry{en})
		}
		en.answer <- f
		return back
	case abandoned:
		// Its client was told 451 and sends it again: what the engine
		// did not deliver is left to that retry.
		switch a.Outcome {
		case plugin.Delivered:
			log.Warn("delivered after its client was told to try again (answer_timeout): the client sends it again, so it may arrive twice")
		case plugin.Rejected, plugin.Deferred, plugin.Left:
			s.remove([]*entry{en})
			return a.Outcome == plugin.Rejected
		}
	}
	return false
}

// judge maps an outcome to the reply, and says whether the spool lets
// go of the message (its client keeps it), keeps it for good (its client
// hears 250 while the engine still has work to do), and whether a
// rejection was taken back.
func (in *Input) judge(a plugin.Answer) (f fate, withdraw, keep, back bool) {
	switch a.Outcome {
	case plugin.Delivered, plugin.Dropped, plugin.Quarantined:
		return fate{}, false, false, false
	case plugin.Rejected:
		if len(a.Recipients) > 0 {
			if !in.lmtp {
				// SMTP has one reply for all: the refused recipients'
				// copy goes to the quarantine, and the client hears 250.
				return fate{}, false, false, false
			}
			f.perRcpt = map[string]*smtp.SMTPError{}
			for rcpt, err := range a.Recipients {
				f.perRcpt[rcpt] = permFail(err.Error())
			}
			return f, true, false, true
		}
		return fate{reply: permFail(a.Reason)}, true, false, true
	case plugin.Deferred:
		if a.Accepted {
			return fate{}, false, true, false
		}
		return fate{reply: tempFail("4.3.0", "not delivered yet, try again later: "+a.Reason)}, true, false, false
	case plugin.Left:
		why := a.Reason
		if why == "" {
			why = "try again later"
		}
		return fate{reply: tempFail("4.7.1", why)}, true, false, false
	}
	return fate{reply: tempFail("4.3.0", "try again later")}, true, false, false
}

// wait waits for a waiting client's answer, at most answer_timeout. When
// the time is up first, the client is told 451 and keeps the message;
// the spool lets go of it at once if no poll read it yet, else when the
// engine is done with it (answer).
func (in *Input) wait(s *spool, en *entry) fate {
	t := time.NewTimer(in.answerTimeout)
	defer t.Stop()
	select {
	case f := <-en.answer:
		return f
	case <-t.C:
	}
	return s.giveUp(en, tempFail("4.4.7", "mailflow did not finish with the message within its answer_timeout; try again later"))
}

// giveUp stops waiting for en's outcome and returns why, unless its answer
// came meanwhile.
func (s *spool) giveUp(en *entry, why *smtp.SMTPError) fate {
	s.mu.Lock()
	switch en.state {
	case answered: // the answer is on its way
		s.mu.Unlock()
		return <-en.answer
	case abandoned:
		s.mu.Unlock()
		return fate{reply: why}
	}
	en.state = abandoned
	unread := !en.fetched
	s.mu.Unlock()
	if unread {
		s.remove([]*entry{en})
	}
	return fate{reply: why}
}

// stopWaiting answers every client still waiting, as mailflow stops.
func (s *spool) stopWaiting(why string) {
	s.mu.Lock()
	var ens []*entry
	for _, en := range s.entries {
		if en.state == waiting {
			ens = append(ens, en)
		}
	}
	s.mu.Unlock()
	for _, en := range ens {
		f := s.giveUp(en, tempFail("4.3.2", why+"; try again later"))
		select {
		case en.answer <- f:
		default:
		}
	}
}

// replyCode finds an SMTP reply's code and enhanced code in an output's
// error ("smtp: RCPT TO:<a@b>: 550 5.1.1 no such user").
var replyCode = regexp.MustCompile(`\b([245][0-9][0-9])[ -]([245]\.[0-9]{1,3}\.[0-9]{1,3})?`)

// permFail is a 5xx reply for a refusal described by text: the code and
// enhanced code in it when it carries a 5xx reply, else 550 5.7.1 (a
// script's reject("5.7.1 words") may name its own enhanced code).
func permFail(text string) *smtp.SMTPError {
	e := &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: oneLine(text)}
	if loc := replyCode.FindStringSubmatchIndex(text); loc != nil && text[loc[2]] == '5' {
		e.Code, _ = strconv.Atoi(text[loc[2]:loc[3]])
		e.EnhancedCode = smtp.EnhancedCode{5, 0, 0}
		if loc[4] >= 0 {
			e.EnhancedCode = parseEnhanced(text[loc[4]:loc[5]])
		}
		// The server's words, without the output's account of the step.
		if rest := oneLine(text[loc[1]:]); rest != "" {
			e.Message = rest
		}
	} else if code, rest, ok := strings.Cut(text, " "); ok && strings.HasPrefix(code, "5.") && len(code) <= 9 {
		if ec := parseEnhanced(code); ec[0] == 5 {
			e.EnhancedCode, e.Message = ec, oneLine(rest)
		}
	}
	return e
}

// tempFail is a 451 reply.
func tempFail(enhanced, text string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: 451, EnhancedCode: parseEnhanced(enhanced), Message: oneLine(text)}
}

func parseEnhanced(s string) smtp.EnhancedCode {
	var ec smtp.EnhancedCode
	if _, err := fmt.Sscanf(s, "%d.%d.%d", &ec[0], &ec[1], &ec[2]); err != nil {
		return smtp.EnhancedCodeNotSet
	}
	return ec
}

// oneLine makes text fit one reply line: no line breaks, at most 400
// bytes.
func oneLine(text string) string {
	text = strings.Join(strings.Fields(text), " ")
	if len(text) > 400 {
		text = text[:400]
	}
	return text
}
