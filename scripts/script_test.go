package scripts

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailflow/mailflow/engine/plugin"

	lua "github.com/yuin/gopher-lua"

	"github.com/mailflow/mailflow/engine/message"
)

// load compiles src as a script file in a temporary directory.
func load(t *testing.T, src string, limits plugin.ScriptLimits) *Script {
	t.Helper()
	path := filepath.Join(t.TempDir(), "test.lua")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Load(path, limits)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// eml reads a message from testdata.
func eml(t *testing.T, name string) *message.Message {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	m := message.New(b, message.Source{Input: "inbox", ID: name})
	t.Cleanup(func() { m.Close() })
	return m
}

// eval runs `filter` whose body is body on the message, with the script
// storing what it wants checked in the global `out` table, and returns the
// values of out as strings ("nil" for nil).
func eval(t *testing.T, msgFile, body string, keys ...string) map[string]string {
	t.Helper()
	wrapped := "out = {}\nfunction filter(msg)\n" + body + "\n"
	for _, k := range keys {
		wrapped += "state['" + k + "'] = tostring(out['" + k + "'])\n"
	}
	wrapped += "end\n"
	s := load(t, wrapped, plugin.ScriptLimits{})
	if _, err := s.Filter(context.Background(), eml(t, msgFile)); err != nil {
		t.Fatalf("filter: %v", err)
	}
	got := map[string]string{}
	for _, k := range keys {
		v, _ := s.shared.values[k]
		got[k] = v.String()
	}
	return got
}

func expect(t *testing.T, got map[string]string, want map[string]string) {
	t.Helper()
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s = %q, want %q", k, got[k], w)
		}
	}
}

func TestHeaderReading(t *testing.T) {
	got := eval(t, "multipart.eml", `
		out.subject = msg:header("subject")
		out.from = msg:header("From")
		out.raw = msg:raw_header("Subject")
		out.missing = msg:header("X-Nope")
		local spam = msg:headers("X-Spam")
		out.spam = table.concat(spam, ",")
		out.nspam = #spam
		out.none = #msg:headers("X-Nope")
		local all = msg:headers()
		out.first = all[1].name .. "=" .. all[1].value
		out.count = #all
		out.latin = ""`,
		"subject", "from", "raw", "missing", "spam", "nspam", "none", "first", "count")
	expect(t, got, map[string]string{
		"subject": "Über das Treffen",
		"from":    "Jörg Müller <joerg@example.org>",
		"raw":     "=?UTF-8?B?w5xiZXIgZGFzIFRyZWZmZW4=?=",
		"missing": "nil",
		"spam":    "yes,no",
		"nspam":   "2",
		"none":    "0",
		"first":   "Return-Path=<bounce@lists.example.org>",
		"count":   "13",
	})

	got = eval(t, "qp-latin1.eml", `
		out.subject = msg:header("Subject")
		out.from = msg:header("From")`, "subject", "from")
	expect(t, got, map[string]string{
		"subject": "Résumé de la réunion",
		"from":    "François <francois@example.fr>", // raw Latin-1 byte read as Latin-1
	})

	got = eval(t, "broken-charset.eml", `out.subject = msg:header("Subject")`, "subject")
	expect(t, got, map[string]string{"subject": "=?x-no-such-charset?Q?caf=E9?="})
}

func TestAddresses(t *testing.T) {
	got := eval(t, "multipart.eml", `
		local f = msg:from()
		out.from = f[1].name .. "|" .. f[1].address
		local to = msg:to()
		out.to = #to .. ":" .. to[1].name .. "|" .. to[1].address .. "," .. to[2].name .. "|" .. to[2].address
		out.cc = msg:cc()[1].address
		out.list = msg:addresses("Return-Path")[1].address
		out.none = #msg:reply_to()`, "from", "to", "cc", "list", "none")
	expect(t, got, map[string]string{
		"from": "Jörg Müller|joerg@example.org",
		"to":   "2:Anna Beispiel|anna@example.net,|bob@example.net",
		"cc":   "carol@example.com",
		"list": "bounce@lists.example.org",
		"none": "0",
	})
	// An unparseable field still gives up its addresses.
	m := message.New([]byte("From: broken <<a@b.example>> ,, \"x\r\nTo: x\r\n\r\nhi\r\n"), message.Source{})
	if a := parseAddresses(m.Header.Values("From")); len(a) != 1 || a[0].Address != "a@b.example" {
		t.Errorf("loose parse = %+v", a)
	}
}

func TestBodyText(t *testing.T) {
	cases := []struct{ file, want string }{
		{"multipart.eml", "Grüße aus Köln — café ☕\nZweite Zeile\n"},
		{"qp-latin1.eml", "Bonjour, voici le résumé de la réunion.\r\nCafé à 10h.\r\n"},
		{"broken-charset.eml", "café au lait\r\n"},
	}
	for _, c := range cases {
		got := eval(t, c.file, `out.text = msg:text()`, "text")
		if got["text"] != c.want {
			t.Errorf("%s: text = %q, want %q", c.file, got["text"], c.want)
		}
	}
	got := eval(t, "html-only.eml", `out.text = msg:text()`, "text")["text"]
	if !strings.Contains(got, "Big sale") || !strings.Contains(got, "Everything & more") ||
		strings.Contains(got, "alert") || strings.Contains(got, "color") || strings.Contains(got, "<") {
		t.Errorf("html text = %q", got)
	}
}

func TestAttachments(t *testing.T) {
	got := eval(t, "multipart.eml", `
		local a = msg:attachments()
		out.n = #a
		out.name = a[1].name
		out.type = a[1].content_type
		out.size = a[1].size`, "n", "name", "type", "size")
	expect(t, got, map[string]string{"n": "1", "name": "Bericht für 2026.pdf", "type": "application/pdf", "size": "1033"})
	got = eval(t, "qp-latin1.eml", `out.n = #msg:attachments()`, "n")
	expect(t, got, map[string]string{"n": "0"})
}

func TestMessageFields(t *testing.T) {
	before := time.Now().Unix()
	got := eval(t, "qp-latin1.eml", `
		out.size = msg.size
		out.input = msg.input
		out.id = msg.id
		out.mid = msg.message_id
		out.at = msg.received_at
		out.sender = msg.sender
		out.date = msg.date
		out.nothing = msg.nothing`, "size", "input", "id", "mid", "at", "sender", "date", "nothing")
	expect(t, got, map[string]string{"size": "321", "input": "inbox", "id": "qp-latin1.eml",
		"mid": "qp-1@example.fr", "sender": "", "date": "nil", "nothing": "nil"})
	dated := eval(t, "multipart.eml", `out.date = msg.date`, "date")
	expect(t, dated, map[string]string{"date": "1795255200"}) // Sat, 21 Nov 2026 10:00:00 +0000
	if at, err := strconv.ParseInt(got["at"], 10, 64); err != nil || at < before-1 || at > time.Now().Unix() {
		t.Errorf("received_at = %q, want the time the message was read", got["at"])
	}
}

func TestHeaderChangesKeepBodyBytes(t *testing.T) {
	s := load(t, `
		function filter(msg)
			msg:set_header("Subject", "Grüße vom Team [tagged]")
			msg:add_header("X-Trail", "one")
			msg:add_header("X-Trail", "two")
			msg:remove_header("X-Spam")
			msg:set_header("X-Count", 42)
		end`, plugin.ScriptLimits{})
	m := eml(t, "multipart.eml")
	orig, _ := io.ReadAll(m.Original())
	if _, err := s.Filter(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(m.Reader())
	i, j := bytes.Index(orig, []byte("\r\n\r\n")), bytes.Index(out, []byte("\r\n\r\n"))
	if !bytes.Equal(orig[i:], out[j:]) {
		t.Fatal("body bytes changed")
	}
	hdr := string(out[:j])
	for _, want := range []string{"Cc: Carol <carol@example.com>\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= vom Team [tagged]\r\nDate:", "X-Trail: two\r\nX-Trail: one", "X-Count: 42"} {
		if !strings.Contains(hdr, want) {
			t.Errorf("header lacks %q:\n%s", want, hdr)
		}
	}
	if strings.Contains(hdr, "X-Spam") {
		t.Error("X-Spam not removed")
	}
	// The next script in a chain sees the change, decoded.
	s2 := load(t, `function filter(msg) if msg:header("Subject") ~= "Grüße vom Team [tagged]" then return drop("wrong: " .. msg:header("Subject")) end end`, plugin.ScriptLimits{})
	if v, err := s2.Filter(context.Background(), m); err != nil || v.Action != plugin.ActionKeep {
		t.Errorf("second script: %v %v %s", v.Action, err, v.Reason)
	}
}

func TestHeaderInjectionRefused(t *testing.T) {
	for _, call := range []string{
		`msg:set_header("X-A", "a\r\nBcc: victim@example.com")`,
		`msg:add_header("X-A", "a\nb")`,
		`msg:set_header("Bad Name", "x")`,
		`msg:set_header("X:Y", "x")`,
		`msg:set_header("", "x")`,
		`msg:set_recipients({"a@b\r\nRCPT TO:<c@d>"})`,
		`msg.sender = "a@b>\r\nRCPT TO:<c@d"`,
		`return redirect("x y@z")`,
	} {
		s := load(t, "function filter(msg)\n"+call+"\nend", plugin.ScriptLimits{})
		m := eml(t, "qp-latin1.eml")
		_, err := s.Filter(context.Background(), m)
		if err == nil {
			t.Errorf("%s: accepted", call)
			continue
		}
		if m.HeaderChanged() || len(m.Envelope.Recipients) > 0 || m.Envelope.Sender != "" {
			t.Errorf("%s: message changed despite the error", call)
		}
	}
}

func TestEnvelope(t *testing.T) {
	s := load(t, `
		function filter(msg)
			assert(#msg:recipients() == 0)
			msg.sender = "bounces@example.org"
			msg:set_recipients({"a@example.net", "b@example.net"})
			assert(msg:recipients()[2] == "b@example.net")
		end`, plugin.ScriptLimits{})
	m := eml(t, "qp-latin1.eml")
	if _, err := s.Filter(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	if m.Envelope.Sender != "bounces@example.org" || strings.Join(m.Envelope.Recipients, ",") != "a@example.net,b@example.net" {
		t.Errorf("envelope = %+v", m.Envelope)
	}
	for set, want := range map[string]string{`""`: "<>", `"<>"`: "<>", `nil`: ""} {
		s := load(t, "function filter(msg)\n  msg.sender = \"x@example.org\"\n  msg.sender = "+set+"\nend", plugin.ScriptLimits{})
		m := eml(t, "qp-latin1.eml")
		if _, err := s.Filter(context.Background(), m); err != nil || m.Envelope.Sender != want {
			t.Errorf("msg.sender = %s: %q %v, want %q", set, m.Envelope.Sender, err, want)
		}
	}
}

func TestVerdicts(t *testing.T) {
	cases := []struct {
		ret  string
		want plugin.Verdict
	}{
		{``, plugin.Verdict{Action: plugin.ActionKeep}},
		{`return keep()`, plugin.Verdict{Action: plugin.ActionKeep}},
		{`return drop("spam")`, plugin.Verdict{Action: plugin.ActionDrop, Reason: "spam"}},
		{`return quarantine("looks odd")`, plugin.Verdict{Action: plugin.ActionQuarantine, Reason: "looks odd"}},
		{`return route("a", "b")`, plugin.Verdict{Action: plugin.ActionRoute, Outputs: []string{"a", "b"}}},
		{`return route({"c"})`, plugin.Verdict{Action: plugin.ActionRoute, Outputs: []string{"c"}}},
		{`return redirect("x@example.com")`, plugin.Verdict{Action: plugin.ActionRedirect, Recipients: []string{"x@example.com"}}},
		{`return leave("not yet")`, plugin.Verdict{Action: plugin.ActionLeave, Reason: "not yet"}},
		{`return reject("5.7.1 spam")`, plugin.Verdict{Action: plugin.ActionReject, Reason: "5.7.1 spam"}},
	}
	for _, c := range cases {
		s := load(t, "function filter(msg)\n"+c.ret+"\nend", plugin.ScriptLimits{})
		v, err := s.Filter(context.Background(), eml(t, "qp-latin1.eml"))
		if err != nil {
			t.Errorf("%s: %v", c.ret, err)
			continue
		}
		if v.Action != c.want.Action || v.Reason != c.want.Reason ||
			strings.Join(v.Outputs, ",") != strings.Join(c.want.Outputs, ",") ||
			strings.Join(v.Recipients, ",") != strings.Join(c.want.Recipients, ",") {
			t.Errorf("%s: got %+v, want %+v", c.ret, v, c.want)
		}
	}
	for _, bad := range []string{`return 42`, `return "drop"`, `return route()`, `return route(1)`} {
		s := load(t, "function filter(msg)\n"+bad+"\nend", plugin.ScriptLimits{})
		if _, err := s.Filter(context.Background(), eml(t, "qp-latin1.eml")); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

func TestLogAndPrint(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	s := load(t, `
		function filter(msg)
			log.info("seen", "subject", msg:header("Subject"), "n", 3)
			log.warn("odd")
			print("printed", 1, true)
		end`, plugin.ScriptLimits{})
	s.Provision(plugin.Env{Logger: slog.New(slog.NewTextHandler(lockedWriter{&buf, &mu}, nil))})
	if _, err := s.Filter(context.Background(), eml(t, "qp-latin1.eml")); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{`level=INFO msg=seen script=test.lua input=inbox id=qp-latin1.eml message_id=qp-1@example.fr subject="Résumé de la réunion" n=3`,
		`level=WARN msg=odd`, `msg="printed\t1\ttrue"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestStateIsSharedAndCountsExactly(t *testing.T) {
	s := load(t, `
		function filter(msg)
			state.add("seen")
			state.last = msg.id
			if state.flag == nil then state.flag = true end
		end`, plugin.ScriptLimits{})
	const workers, each = 8, 50
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				m := message.New([]byte("Subject: x\r\n\r\nbody\r\n"), message.Source{Input: "in", ID: "m"})
				if _, err := s.Filter(context.Background(), m); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if got := s.shared.values["seen"].String(); got != "400" {
		t.Errorf("seen = %s, want 400", got)
	}
	if s.shared.values["last"].String() != "m" || s.shared.values["flag"].String() != "true" {
		t.Errorf("state = %v", s.shared.values)
	}
	bad := load(t, `function filter(msg) state.t = {} end`, plugin.ScriptLimits{})
	if _, err := bad.Filter(context.Background(), eml(t, "qp-latin1.eml")); err == nil || !strings.Contains(err.Error(), "strings, numbers and booleans") {
		t.Errorf("table in state: %v", err)
	}
}

func TestRegexpAndUTF8Helpers(t *testing.T) {
	got := eval(t, "multipart.eml", `
		out.match = re.match("^news\\.", "news.example.org")
		out.nomatch = re.match("^x", "news")
		local all, user, host = re.find("(\\w+)@([\\w.]+)", "mail joerg@example.org now")
		out.find = all .. "|" .. user .. "|" .. host
		out.none = re.find("z+", "abc")
		out.all = table.concat(re.find_all("\\d+", "a1b22c333"), ",")
		out.rep = re.replace("(\\w+)@example\\.org", "joerg@example.org", "$1@example.net")
		out.split = table.concat(re.split("\\s*,\\s*", "a , b,c"), "|")
		out.len = utf8.len("Grüße")
		out.upper = utf8.upper("grüße")
		out.sub = utf8.sub("Grüße", 2, 3)
		out.valid = utf8.valid("\255")
		out.bad = pcall(re.match, "(", "x")`,
		"match", "nomatch", "find", "none", "all", "rep", "split", "len", "upper", "sub", "valid", "bad")
	expect(t, got, map[string]string{
		"match": "true", "nomatch": "false", "find": "joerg@example.org|joerg|example.org", "none": "nil",
		"all": "1,22,333", "rep": "joerg@example.net", "split": "a|b|c", "len": "5", "upper": "GRÜßE",
		"sub": "rü", "valid": "false", "bad": "false",
	})
}

// require is mailflow's own, limited to script_lib (require_test.go).
func TestSandbox(t *testing.T) {
	got := eval(t, "qp-latin1.eml", `
		out.os = os; out.io = io; out.debug = debug; out.package = package
		out.dofile = dofile; out.loadfile = loadfile
		out.load = load; out.loadstring = loadstring; out.coroutine = coroutine
		out.dump = string.dump; out.setfenv = setfenv; out.collectgarbage = collectgarbage
		out.string = type(string.format); out.math = type(math.floor); out.table = type(table.insert)`,
		"os", "io", "debug", "package", "dofile", "loadfile", "load", "loadstring",
		"coroutine", "dump", "setfenv", "collectgarbage", "string", "math", "table")
	for k, v := range got {
		want := "nil"
		if k == "string" || k == "math" || k == "table" {
			want = "function"
		}
		if v != want {
			t.Errorf("%s = %s, want %s", k, v, want)
		}
	}
}

func TestRunawayErroringAndGreedyScriptsAreStopped(t *testing.T) {
	limits := plugin.ScriptLimits{Timeout: 200 * time.Millisecond, MaxMemory: 16 << 20}
	cases := []struct {
		name, body, want string
	}{
		{"loop", `while true do end`, "ran longer than 200ms"},
		{"error", `error("boom")`, "test.lua:3: boom"},
		{"nil index", `local t = nil; return t.x`, "test.lua:3: attempt to index a non-table object(nil) with key 'x'"},
		{"doubling", `local s = "x"; while true do s = s .. s end`, "memory"},
		{"rep", `local s = string.rep("x", 1e9)`, "over the script memory limit"},
		{"format", `local s = string.format("%999999999d", 1)`, "too large"},
		{"table", `local t = {}; local i = 0; while true do i = i + 1; t[i] = "item" .. i end`, "memory"},
		{"recursion", `local function f(n) return f(n + 1) + 1 end; f(1)`, "stack overflow"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			limits := limits
			if c.want == "memory" {
				limits.Timeout = time.Minute // only the memory bound can stop these
			}
			s := load(t, "local n = 0\nfunction filter(msg)\n if msg.id == 'bad' then "+c.body+" end\n n = n + 1\n return route('ok' .. n)\nend", limits)
			start := time.Now()
			bad := message.New([]byte("Subject: bad\r\n\r\nx\r\n"), message.Source{Input: "in", ID: "bad"})
			_, err := s.Filter(context.Background(), bad)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to mention %q", err, c.want)
			}
			if d := time.Since(start); d > 20*time.Second {
				t.Errorf("took %v to stop", d)
			}
			// The next message is processed normally.
			good := message.New([]byte("Subject: good\r\n\r\nx\r\n"), message.Source{Input: "in", ID: "good"})
			v, err := s.Filter(context.Background(), good)
			if err != nil || v.Action != plugin.ActionRoute {
				t.Fatalf("next message: %+v %v", v, err)
			}
		})
	}
}

func TestLoadErrorsNameFileAndLine(t *testing.T) {
	dir := t.TempDir()
	cases := []struct{ src, want string }{
		{"function filter(msg)\n  if x then\nend\n", "bad.lua: at end of file"},
		{"function filter(msg)\n  x = = 1\nend\n", "bad.lua:2:"},
		{"function helper() end\n", "does not define function filter(msg)"},
		{"local x = nil\nx.y = 1\nfunction filter(msg) end\n", "bad.lua:2:"},
		{"while true do end\nfunction filter(msg) end\n", "top level: script ran longer than"},
	}
	for _, c := range cases {
		path := filepath.Join(dir, "bad.lua")
		os.WriteFile(path, []byte(c.src), 0o644)
		_, err := Load(path, plugin.ScriptLimits{Timeout: 100 * time.Millisecond})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: err = %v, want %q", c.src, err, c.want)
		}
	}
}

// msg is detached from its message once the call returns: a script that
// kept it (in a closure handed to the next call's state, say) cannot read
// or change the next message through it.
func TestMessageIsDetachedAfterItsCall(t *testing.T) {
	s := load(t, `function filter(msg) kept = msg end`, plugin.ScriptLimits{})
	if _, err := s.Filter(context.Background(), eml(t, "qp-latin1.eml")); err != nil {
		t.Fatal(err)
	}
	v := <-s.pool
	defer v.close()
	if v.msgUD.Value != nil || v.cur.m != nil {
		t.Fatal("the state still holds the message after the call")
	}
	v.L.SetGlobal("kept", v.msgUD)
	v.L.DoString(`ok, err = pcall(function() return kept:header("Subject") end)`)
	if v.L.GetGlobal("ok") != lua.LFalse || !strings.Contains(v.L.GetGlobal("err").String(), "no longer being filtered") {
		t.Errorf("kept msg usable after its call: %v %v", v.L.GetGlobal("ok"), v.L.GetGlobal("err"))
	}
}

func TestTimeHelpers(t *testing.T) {
	before := time.Now().Unix()
	got := eval(t, "qp-latin1.eml", `
		out.now = now()
		out.date = date(1795255200)`, "now", "date")
	if n, err := strconv.ParseInt(got["now"], 10, 64); err != nil || n < before || n > time.Now().Unix() {
		t.Errorf("now() = %q", got["now"])
	}
	if d, err := time.Parse(time.RFC1123Z, got["date"]); err != nil || d.Unix() != 1795255200 {
		t.Errorf("date(1795255200) = %q (%v)", got["date"], err)
	}
}

// A script sees the source's folder, flags and date, and can set folder
// and flags for an output that stores them (IMAP).
func TestFolderAndFlags(t *testing.T) {
	s := load(t, `function filter(msg)
  if msg.folder == "Archive" and msg.flags[1] == "\\Seen" and msg.internal_date == 1700000000 then
    msg.folder = "Old/Archive"
    msg.flags = {"\\Seen", "$Migrated"}
  end
end`, plugin.ScriptLimits{})
	m := message.New([]byte("Subject: x\r\n\r\nbody\r\n"), message.Source{Input: "in", ID: "1"})
	m.Folder, m.Flags, m.InternalDate = "Archive", []string{`\Seen`}, time.Unix(1700000000, 0)
	if _, err := s.Filter(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	if m.Folder != "Old/Archive" || strings.Join(m.Flags, " ") != `\Seen $Migrated` {
		t.Fatalf("folder %q flags %v", m.Folder, m.Flags)
	}
	bad := load(t, `function filter(msg) msg.flags = {"two words"} end`, plugin.ScriptLimits{})
	if _, err := bad.Filter(context.Background(), m); err == nil || !strings.Contains(err.Error(), "not a flag") {
		t.Fatalf("a flag with a space must be refused: %v", err)
	}
}
