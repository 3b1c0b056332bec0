package scripts

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailflow/mailflow/engine/plugin"

	"github.com/mailflow/mailflow/engine/message"
)

func benchMessage(size int) []byte {
	var b strings.Builder
	b.WriteString("Return-Path: <sender@example.org>\r\n")
	for i := 0; i < 4; i++ {
		fmt.Fprintf(&b, "Received: from relay%d.example.org by mx.example.net; Sat, 21 Nov 2026 10:00:0%d +0000\r\n", i, i)
	}
	b.WriteString("From: Sender Name <sender@example.org>\r\nTo: rcpt@example.net\r\nSubject: A benchmark message\r\n")
	b.WriteString("Date: Sat, 21 Nov 2026 10:00:00 +0000\r\nMessage-ID: <bench@example.org>\r\nList-Id: <news.example.org>\r\n")
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
	line := strings.Repeat("lorem ipsum dolor sit amet ", 2) + "\r\n"
	for b.Len() < size {
		b.WriteString(line)
	}
	return []byte(b.String())
}

// BenchmarkChain3 runs the three-script chain on 10 KB messages, one
// goroutine, so msgs/s is per core. Each iteration gets a fresh copy of the
// parsed header, so the scripts do the same work every time; reading and
// hashing the message (the engine's part) is measured by
// BenchmarkChain3WithParse.
func BenchmarkChain3(b *testing.B) { benchChain3(b, false) }

// BenchmarkChain3WithParse also parses each message from its bytes, as the
// engine does for every message it reads.
func BenchmarkChain3WithParse(b *testing.B) { benchChain3(b, true) }

func benchChain3(b *testing.B, parse bool) {
	// The chain the e2e bench runs too: three scripts that read and set
	// headers, the shape of a typical tagging chain.
	paths, _ := filepath.Glob(filepath.Join("..", "bench", "lua", "*.lua"))
	if len(paths) != 3 {
		b.Fatalf("found %d scripts in bench/lua, want 3", len(paths))
	}
	var chain []*Script
	for _, path := range paths {
		s, err := Load(path, plugin.ScriptLimits{})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		chain = append(chain, s)
	}
	raw := benchMessage(10 << 10)
	ctx := context.Background()
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	b.ResetTimer()
	base := message.New(raw, message.Source{Input: "in", ID: "x"})
	for i := 0; i < b.N; i++ {
		m := base
		if parse {
			m = message.New(raw, message.Source{Input: "in", ID: "x"})
		} else {
			m.Header = base.Header.Clone()
		}
		for _, s := range chain {
			if _, err := s.Filter(ctx, m); err != nil {
				b.Fatal(err)
			}
		}
		if i == 0 && !strings.HasPrefix(m.Header.Get("Subject"), "[bench] A bench") {
			b.Fatal("chain did not run")
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkSetHeader sets a header field of 1, 4 and 12 MB through a script
// and writes the header out: the time per op should grow with the size (it
// was quadratic: 2.8/10.6/26.9 s for 1/2/4 MB). 16 MB would be over the
// header's max_header_size, and refused.
func BenchmarkSetHeader(b *testing.B) {
	for _, mb := range []int{1, 4, 12} {
		b.Run(fmt.Sprintf("%dMB", mb), func(b *testing.B) {
			dir := b.TempDir()
			path := filepath.Join(dir, "big.lua")
			src := fmt.Sprintf("local big = string.rep(\"word \", %d)\nfunction filter(msg)\n  msg:set_header(\"X-Big\", big)\nend\n", mb<<20/5)
			if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
				b.Fatal(err)
			}
			s, err := Load(path, plugin.ScriptLimits{Timeout: time.Minute, MaxMemory: 1 << 30})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			base := message.New(benchMessage(10<<10), message.Source{Input: "in", ID: "x"})
			b.SetBytes(int64(mb << 20))
			b.ResetTimer()
			for range b.N {
				m := base
				m.Header = base.Header.Clone()
				if _, err := s.Filter(context.Background(), m); err != nil {
					b.Fatal(err)
				}
				if m.Size() < int64(mb<<20) {
					b.Fatal("the field was not set")
				}
			}
		})
	}
}
