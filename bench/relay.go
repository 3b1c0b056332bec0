package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/mailflow/mailflow/connectors/smtp"
)

// relayClient is the practical end-to-end limit: what moving the mail
// costs with the same connections mailflow uses (pipelined RETR with a
// window of 16, four SMTP connections, DELE once everything was accepted)
// and nothing else: no ledger, no parsing, no hashing, no spooling, no
// filters. It is not safe (a crash loses what it held), which is the point:
// the difference between it and mailflow is the price of the contract.
func relayClient(args []string) int {
	if len(args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: bench relay-client POP3S USER PASSWORD CA SMTP")
		return 2
	}
	c, list, err := popLogin(args[0], args[1], args[2], args[3])
	if err != nil {
		fmt.Fprintln(os.Stderr, "relay: pop3:", err)
		return 1
	}
	msgs := make(chan []byte, 16)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var sendErr error
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := smtp.Dial(context.Background(), args[4], nil, time.Minute)
			if err == nil {
				err = s.Hello("localhost")
			}
			for b := range msgs {
				if err != nil {
					continue
				}
				var res []smtp.RcptResult
				res, err = s.Send(smtp.Envelope{From: "relay@example.org", To: []string{"sink@example.net"}, Size: int64(len(b))}, bytes.NewReader(b))
				if err == nil && res[0].Err != nil {
					err = res[0].Err
				}
			}
			if err == nil {
				s.Quit()
			}
			mu.Lock()
			if err != nil && sendErr == nil {
				sendErr = err
			}
			mu.Unlock()
		}()
	}
	err = retrEach(c, list, 16, func(i int, r io.Reader) error {
		var b bytes.Buffer
		b.Grow(int(list[i].Size))
		_, err := b.ReadFrom(r)
		msgs <- b.Bytes()
		return err
	})
	close(msgs)
	wg.Wait()
	if err == nil {
		err = sendErr
	}
	if err == nil {
		ns := make([]int, len(list))
		for i, m := range list {
			ns[i] = m.Number
		}
		_, err = c.DeleEach(ns)
	}
	if err == nil {
		err = c.Quit()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "relay:", err)
		return 1
	}
	return 0
}
