package batch

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func readCSV(t *testing.T, text string) ([]*Job, error) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "mailboxes.csv")
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return Read(file)
}

// A row sets in its mailbox's plan what the options of mailflow migrate
// set, Gmail's and --sync-deletes' included; an empty cell sets nothing,
// and a wrong value names its row and column.
func TestRowsSetTheirPlans(t *testing.T) {
	jobs, err := readCSV(t, "from,to,to_password_env,gmail,labels,include_spam_trash,max_bytes_per_day,sync_deletes,rate\n"+
		"imaps://a@imap.gmail.com,imaps://a@new.example,PW_A,true,first,true,500000000,,600/m\n"+
		"imaps://b@old.example,imaps://b@new.example,PW_B,false,,,,true,\n")
	if err != nil {
		t.Fatal(err)
	}
	a, b := jobs[0].Plan, jobs[1].Plan
	if a.Gmail == nil || !*a.Gmail || a.Labels != "first" || !a.IncludeSpamTrash || a.MaxBytesPerDay != 500000000 || a.SyncDeletes || a.Rate != "600/m" {
		t.Fatalf("row 2: %+v", a)
	}
	if b.Gmail == nil || *b.Gmail || b.Labels != "" || b.IncludeSpamTrash || b.MaxBytesPerDay != 0 || !b.SyncDeletes {
		t.Fatalf("row 3: %+v", b)
	}
	_, err = readCSV(t, "from,to,sync_deletes\nimaps://a@old.example,imaps://a@new.example,sometimes\n")
	if err == nil || !strings.Contains(err.Error(), "mailboxes.csv:2: sync_deletes") {
		t.Fatalf("a wrong value: %v", err)
	}
}
