package message

import "slices"

// Received is how a message was handed to mailflow over SMTP or LMTP (an
// smtp or lmtp input): the envelope as the client gave it, and who that
// client was. It is nil for mail fetched from a mailbox. It does not
// change while the message is filtered (scripts change Envelope); the
// quarantine keeps it, so that a resend goes to the recipients the mail
// was sent to.
type Received struct {
	// Sender is MAIL FROM: NullSender for the null reverse-path <>.
	Sender string `json:"sender"`
	// Recipients are the RCPT TO addresses that were accepted.
	Recipients []string `json:"recipients"`
	Client     Client   `json:"client"`
}

// Client is who handed a message over. Behind a trusted peer that said who
// its own client was (Postfix's XCLIENT or XFORWARD, a content filter),
// it is that original client, and Forwarded is set.
type Client struct {
	// Address is the client's IP address; "" on a Unix socket.
	Address string `json:"address,omitempty"`
	// Name is its host name when a trusted peer gave it; mailflow does no
	// DNS lookups of its own.
	Name string `json:"name,omitempty"`
	Helo string `json:"helo,omitempty"`
	// TLS is the protocol version and cipher suite ("TLSv1.3
	// TLS_AES_128_GCM_SHA256"), "" without TLS.
	TLS string `json:"tls,omitempty"`
	// Auth is the name the client authenticated as, "" if it did not.
	Auth string `json:"auth,omitempty"`
	// Protocol is the RFC 3848 "with" keyword: SMTP, ESMTP, ESMTPS,
	// ESMTPSA, LMTP, ...
	Protocol  string `json:"protocol,omitempty"`
	Forwarded bool   `json:"forwarded,omitempty"`
}

// Envelope is the envelope the message arrived with, as a new value that
// filters may change freely.
func (r *Received) Envelope() Envelope {
	if r == nil {
		return Envelope{}
	}
	return Envelope{Sender: r.Sender, Recipients: slices.Clone(r.Recipients)}
}
