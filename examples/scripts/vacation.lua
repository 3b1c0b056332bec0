-- vacation.lua: answer mail while you are away, as Sieve's vacation does
-- (RFC 5230). Each sender gets at most one reply every `days` days,
-- remembered in state_dir across reloads and restarts. No reply goes to a
-- bounce or an auto-reply (null sender, Auto-Submitted), to mailing lists
-- and bulk mail (List-*, Precedence), to robots (MAILER-DAEMON, owner-*,
-- *-request), to your own addresses, or to mail that was not sent to one
-- of them (To/Cc). The reply has a null envelope sender, Auto-Submitted:
-- auto-replied, In-Reply-To and References. It is sent through the output
-- named here (an SMTP output to your provider's submission port), and
-- recorded with the message it answers: a retry never sends it twice.

local me = {"bob@example.net", "bob@work.example.net"}

function filter(msg)
  local replied, why = vacation{
    output = "smtp",
    from = "Bob <bob@example.net>",
    addresses = me,
    days = 7,
    subject = "Away until 7 December",
    text = "Hello,\n\nI am away until 7 December and read mail when I am back.\nFor anything urgent, write to carol@example.net.\n\nBob",
  }
  if not replied then
    log.debug("no vacation reply", "why", why)
  end
  return keep()
end
