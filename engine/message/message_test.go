package message_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/mailflow/mailflow/engine/enginetest"
	"github.com/mailflow/mailflow/engine/message"
)

func TestMessageRoundTripsEveryKind(t *testing.T) {
	kinds := []enginetest.Kind{enginetest.Plain, enginetest.Multipart, enginetest.UTF8Header, enginetest.RawUTF8,
		enginetest.BareLF, enginetest.DotLines, enginetest.NoHeader, enginetest.Empty, enginetest.EightBitBody}
	for _, k := range kinds {
		t.Run(string(k), func(t *testing.T) {
			raw := enginetest.Message(k, 1, 4000)
			msg, err := message.Read(bytes.NewReader(raw), message.Source{}, message.SpoolOptions{InMemory: 1024, Dir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			defer msg.Close()
			got, _ := io.ReadAll(msg.Reader())
			if !bytes.Equal(got, raw) {
				t.Fatalf("bytes changed")
			}
			if (k == enginetest.NoHeader || k == enginetest.Empty) != (msg.HeaderErr != nil) {
				t.Fatalf("HeaderErr = %v", msg.HeaderErr)
			}
		})
	}
}

func TestChangedHeaderKeepsBodyBytes(t *testing.T) {
	for _, k := range []enginetest.Kind{enginetest.Multipart, enginetest.BareLF} {
		raw := enginetest.Message(k, 2, 3000)
		msg := message.New(raw, message.Source{})
		origBody, _ := io.ReadAll(msg.Body())
		msg.Header.Add("X-Tag", "newsletter")
		msg.Header.Del("Return-Path")
		msg.MarkHeaderChanged()
		out, _ := io.ReadAll(msg.Reader())
		if int64(len(out)) != msg.Size() {
			t.Fatalf("%s: Size %d, wrote %d", k, msg.Size(), len(out))
		}
		if !bytes.HasSuffix(out, origBody) {
			t.Fatalf("%s: body changed", k)
		}
		head := string(out[:len(out)-len(origBody)])
		if !strings.HasPrefix(head, "X-Tag: newsletter") || strings.Contains(head, "Return-Path") {
			t.Fatalf("%s: header %q", k, head)
		}
		if k == enginetest.BareLF && strings.Contains(head, "\r") {
			t.Fatalf("a bare-LF message got CRLF in its new header: %q", head)
		}
	}
}

func TestLargeMessageSpillsAndSizeLimit(t *testing.T) {
	dir := t.TempDir()
	raw := enginetest.Message(enginetest.Huge, 1, 3<<20)
	msg, err := message.Read(bytes.NewReader(raw), message.Source{}, message.SpoolOptions{InMemory: 64 << 10, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("expected one spill file, have %d", len(ents))
	}
	got, _ := io.ReadAll(msg.Reader())
	if !bytes.Equal(got, raw) || msg.MessageID() != "msg-1-huge@example.org" {
		t.Fatal("spilled message changed")
	}
	msg.Close()
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatal("spill file left behind")
	}
	_, err = message.Read(bytes.NewReader(raw), message.Source{}, message.SpoolOptions{InMemory: 64 << 10, Dir: dir, MaxSize: 1 << 20})
	if !errors.Is(err, message.ErrTooLarge) {
		t.Fatalf("want ErrTooLarge, got %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatal("spill file of a refused message left behind")
	}
}
