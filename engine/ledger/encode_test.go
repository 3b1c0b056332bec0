package ledger

import (
	"encoding/json"
	"testing"
	"time"
)

// The hand-written encoding is byte for byte what encoding/json makes.
func TestRecordEncodingMatchesEncodingJSON(t *testing.T) {
	at := time.Date(2026, 11, 30, 12, 1, 2, 345678900, time.UTC)
	recs := []Record{
		{At: at},
		{Settled: Delivered, Accepted: map[string][]string{"smtp": {"a@x", "b@y"}, "archive": {"*"}}, Digest: "abc", Size: 12, Listed: 13, At: at},
		{Refused: map[string][]string{"o": {"c@z"}}, Reasons: []string{"o: <c@z>: 550 \"no\" <&> \u2028 \x01 tab\t nl\n é"}, Sending: []string{"o"}, InDoubt: []string{"o", "p"}, Attempts: 2, At: at.Add(time.Hour)},
		{Accepted: map[string][]string{"generated:v.lua:vacation": nil}, At: at},
		{Reasons: []string{"bad \xff utf-8"}, At: at},
		{Settled: Delivered, Flags: []string{"\\Seen", "$label1"}, Where: map[string]string{"new": "INBOX/17/4", "a<b": "x"}, Removed: true, At: at},
		{Flags: []string{}, At: at},
	}
	for i, rec := range recs {
		want, _ := json.Marshal(rec)
		if got := appendRecord(nil, rec); string(got) != string(want) {
			t.Errorf("record %d:\n got %s\nwant %s", i, got, want)
		}
		wantLine, _ := json.Marshal(journalEntry{Input: "in\"put", ID: "id<1>", Rec: rec})
		if got := appendJournalEntry(nil, "in\"put", "id<1>", rec); string(got) != string(wantLine) {
			t.Errorf("journal %d:\n got %s\nwant %s", i, got, wantLine)
		}
	}
}

func BenchmarkJournalEntry(b *testing.B) {
	rec := Record{Settled: Delivered, Accepted: map[string][]string{"smtp": {"sink@example.net"}}, Digest: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", Size: 2048, Listed: 2048, At: time.Now()}
	b.Run("hand", func(b *testing.B) {
		var buf []byte
		for b.Loop() {
			buf = appendJournalEntry(buf[:0], "bench", "1700000001.M1P1.bench", rec)
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		for b.Loop() {
			json.Marshal(journalEntry{Input: "bench", ID: "1700000001.M1P1.bench", Rec: rec})
		}
	})
}
