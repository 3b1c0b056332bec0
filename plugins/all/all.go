// Package all registers every built-in connector and script language.
package all

import (
	_ "github.com/mailflow/mailflow/connectors/gmail"
	_ "github.com/mailflow/mailflow/connectors/imap"
	_ "github.com/mailflow/mailflow/connectors/maildir"
	_ "github.com/mailflow/mailflow/connectors/mbox"
	_ "github.com/mailflow/mailflow/connectors/pop3"
	_ "github.com/mailflow/mailflow/connectors/smtp"
	_ "github.com/mailflow/mailflow/connectors/smtpd"
	_ "github.com/mailflow/mailflow/scripts"
)
