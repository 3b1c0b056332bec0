package mbox_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/mailflow/mailflow/connectors/mbox"
	"github.com/mailflow/mailflow/engine"
	"github.com/mailflow/mailflow/engine/config"
	"github.com/mailflow/mailflow/plugins"
)

// benchFile writes an mbox of n Takeout-like messages of about size
// bytes each (CRLF, with labels, "From " lines in their bodies) and
// returns its path and size.
func benchFile(b *testing.B, n, size int) (string, int64) {
	b.Helper()
	path := filepath.Join(b.TempDir(), "bench.mbox")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w, _ := mbox.NewWriter(f, mbox.Mboxrd)
	line := "From the archive: a line of text of a realistic length, and more words\r\n"
	body := strings.Repeat(line, max(size/len(line), 1))
	for i := range n {
		msg := fmt.Sprintf("X-GM-THRID: %d\r\nX-Gmail-Labels: Inbox,Opened,Category Updates\r\nMessage-ID: <%d@bench>\r\nFrom: a@example.org\r\nSubject: message %d\r\n\r\n%s", i, i, i, body)
		w.WriteMessage(fmt.Sprintf("From 1789%06d@xxx Wed Jan 05 12:34:56 +0000 2022", i), strings.NewReader(msg))
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	f.Close()
	st, _ := os.Stat(path)
	return path, st.Size()
}

// peakHeap samples the heap in use while run runs.
func peakHeap(run func()) uint64 {
	stop := make(chan struct{})
	done := make(chan uint64)
	go func() {
		var peak uint64
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			peak = max(peak, m.HeapInuse)
			select {
			case <-stop:
				done <- peak
				return
			default:
			}
			runtime.Gosched()
		}
	}()
	run()
	close(stop)
	return <-done
}

// BenchmarkReader streams an mbox through the Reader, as a pipe would
// give it (no ReaderAt): bytes per second, and the heap it needs.
func BenchmarkReader(b *testing.B) {
	for _, size := range []int{2 << 10, 50 << 10} {
		b.Run(fmt.Sprintf("%dKB", size>>10), func(b *testing.B) {
			path, total := benchFile(b, 2000, size)
			data, _ := os.ReadFile(path)
			b.SetBytes(total)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				r := mbox.NewReader(plainReader{bytes.NewReader(data)}, mbox.Auto)
				for {
					m, err := r.Next()
					if err == io.EOF {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
					m.WriteTo(io.Discard)
				}
			}
		})
	}
}

// BenchmarkList lists a file with the input, as the first poll of an
// import does.
func BenchmarkList(b *testing.B) {
	path, total := benchFile(b, 10000, 4<<10)
	b.SetBytes(total)
	b.ReportAllocs()
	for b.Loop() {
		in := newInput(b, path, nil)
		s, _ := in.Open(context.Background())
		if _, err := s.List(context.Background()); err != nil {
			b.Fatal(err)
		}
		s.Close(context.Background())
	}
}

// BenchmarkImportToMaildir imports an mbox into a Maildir through the
// engine, as "mailflow run" would: msgs/s, MB/s and the peak heap. The
// comparison with formail and Python's mailbox is mboxbench's
// (go run ./connectors/mbox/mboxbench).
func BenchmarkImportToMaildir(b *testing.B) {
	for _, c := range []struct {
		n, size int
	}{{5000, 2 << 10}, {500, 200 << 10}} {
		b.Run(fmt.Sprintf("%dx%dKB", c.n, c.size>>10), func(b *testing.B) {
			path, total := benchFile(b, c.n, c.size)
			b.SetBytes(total)
			b.ReportAllocs()
			var peak uint64
			for b.Loop() {
				b.StopTimer()
				dir := b.TempDir()
				os.Rename(path, filepath.Join(dir, "src.mbox"))
				conf := "state_dir = \"state\"\n[[input]]\nname = \"src\"\ntype = \"mbox\"\npath = \"src.mbox\"\npipeline = \"p\"\n[[pipeline]]\nname = \"p\"\noutputs = [\"dst\"]\n[[output]]\nname = \"dst\"\ntype = \"maildir\"\npath = \"out\"\n"
				os.WriteFile(filepath.Join(dir, "mailflow.toml"), []byte(conf), 0o600)
				cfg, err := config.Load(filepath.Join(dir, "mailflow.toml"), plugins.Default)
				if err != nil {
					b.Fatal(err)
				}
				e, err := engine.Open(cfg, plugins.Default, quiet)
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				var st engine.Stats
				peak = max(peak, peakHeap(func() { st, err = e.PollOnce(context.Background(), "src") }))
				if err != nil || st.Delivered != int64(c.n) {
					b.Fatalf("%+v %v", st, err)
				}
				b.StopTimer()
				e.Close()
				os.Rename(filepath.Join(dir, "src.mbox"), path)
				b.StartTimer()
			}
			b.ReportMetric(float64(c.n)*float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MB")
		})
	}
}
