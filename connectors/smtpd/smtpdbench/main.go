// Command smtpdbench measures mail received over SMTP and written to a
// Maildir, two ways side by side on the same messages from the same
// client:
//
//   - mailflow: the smtp input into a Maildir output ("mailflow run"): each
//     message spooled and synced before its 250, then taken through the
//     engine (ledger, hash) and written to the Maildir, synced;
//   - postfix: Postfix's smtpd, its queue, and its virtual(8) delivery
//     agent writing the Maildir (queue file and Maildir file synced), with
//     its defaults but for what a private instance on a high port needs.
//
// A message counts once it is in the Maildir, so the rate is of mail
// delivered, not only accepted. CPU is the servers' own (every Postfix
// process, the ones that exit during a run included; mailflow's one
// process), read from /proc; the client's is not counted. Runs of the
// modes alternate, and the median of each is reported, as markdown.
//
//	go run ./connectors/smtpd/smtpdbench                    # 5,000 messages of 2 KB, 8 connections, 3 runs
//	go run ./connectors/smtpd/smtpdbench -mix mixed -n 2000 # 1-20 KB, the awkward kinds included
//
// It needs root (a private Postfix started with postfix -c, as
// .ci/testenv does; install Postfix with ".ci/testenv install") and a Go
// toolchain (it builds mailflow). SMTPDBENCH_CPUPROFILE=FILE has mailflow
// write a CPU profile of its runs there.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	osuser "os/user"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	smtp "github.com/emersion/go-smtp"

	"github.com/mailflow/mailflow/engine/enginetest"
)

type options struct {
	n, conns, runs int
	mix, modes     string
	base, out      string
	port           int
	mailflow       string // a built mailflow to run instead of building one
	other          string // a second built mailflow, mode "other", to compare revisions side by side
}

func main() {
	var o options
	flag.IntVar(&o.n, "n", 5000, "messages per run")
	flag.IntVar(&o.conns, "conns", 8, "client connections sending at once")
	flag.IntVar(&o.runs, "runs", 3, "runs of each mode (the median is reported)")
	flag.StringVar(&o.mix, "mix", "small", "\"small\" (2 KB each) or \"mixed\" (1-20 KB, every kind of enginetest.Mix)")
	flag.StringVar(&o.modes, "modes", "mailflow,postfix", "modes to run, in order: mailflow, mailflow-after-delivery, postfix, other")
	flag.StringVar(&o.base, "dir", os.TempDir(), "where the Maildirs, spool and queue live")
	flag.StringVar(&o.out, "out", "", "also write the markdown table to this file")
	flag.IntVar(&o.port, "port-base", 33000, "ports: +25 Postfix, +26 mailflow")
	flag.StringVar(&o.mailflow, "mailflow", "", "run this mailflow binary (default: build ./cmd/mailflow)")
	flag.StringVar(&o.other, "other", "", "mode \"other\" runs this mailflow binary (after_spool), to compare two revisions in alternating rounds")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "smtpdbench:", err)
		os.Exit(1)
	}
}

type result struct {
	wall, cpu time.Duration
}

func run(o options) error {
	work, err := os.MkdirTemp(o.base, "smtpdbench-")
	if err != nil {
		return err
	}
	os.Chmod(work, 0o755)
	defer os.RemoveAll(work)
	msgs, err := messages(o.n, o.mix)
	if err != nil {
		return err
	}
	var total int64
	for _, m := range msgs {
		total += int64(len(m))
	}
	fmt.Fprintf(os.Stderr, "%d messages, %.1f MB\n", len(msgs), float64(total)/1e6)
	modes := strings.Split(o.modes, ",")
	var pf *postfix
	if slices.Contains(modes, "postfix") {
		if pf, err = startPostfix(work, o.port+25); err != nil {
			return err
		}
		defer pf.stop()
	}
	mailflowBin := o.mailflow
	if mailflowBin == "" && slices.ContainsFunc(modes, func(m string) bool { return strings.HasPrefix(m, "mailflow") }) {
		mailflowBin = filepath.Join(work, "mailflow-bin")
		build := exec.Command("go", "build", "-o", mailflowBin, "./cmd/mailflow")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("building mailflow (run from the repository's root): %w", err)
		}
	}
	results := map[string][]result{}
	for round := range o.runs {
		order := slices.Clone(modes)
		for range round % len(order) {
			order = append(order[1:], order[0])
		}
		for _, mode := range order {
			var r result
			switch mode {
			case "postfix":
				r, err = pf.measure(msgs, o.conns)
			case "mailflow", "mailflow-after-delivery":
				r, err = measureMailflow(mailflowBin, work, o.port+26, mode == "mailflow-after-delivery", msgs, o.conns)
			case "other":
				if o.other == "" {
					err = errors.New("mode other needs -other BINARY")
					break
				}
				r, err = measureMailflow(o.other, work, o.port+26, false, msgs, o.conns)
			default:
				err = fmt.Errorf("no mode %q", mode)
			}
			if err != nil {
				return fmt.Errorf("%s: %w", mode, err)
			}
			fmt.Fprintf(os.Stderr, "round %d %-24s %7.2f s wall %7.2f s CPU  %6.0f msgs/s\n", round+1, mode, r.wall.Seconds(), r.cpu.Seconds(), float64(len(msgs))/r.wall.Seconds())
			results[mode] = append(results[mode], r)
		}
	}
	var b bytes.Buffer
	report(&b, o, len(msgs), total, modes, results)
	os.Stdout.Write(b.Bytes())
	if o.out != "" {
		return os.WriteFile(o.out, b.Bytes(), 0o644)
	}
	return nil
}

// messages are the mail sent: n distinct messages with CRLF line ends.
func messages(n int, mix string) ([][]byte, error) {
	var msgs [][]byte
	switch mix {
	case "small":
		for i := range n {
			msgs = append(msgs, enginetest.Message(enginetest.Plain, i, 2048))
		}
	case "mixed":
		msgs = enginetest.Mix(n)
	default:
		return nil, fmt.Errorf("-mix %q: want small or mixed", mix)
	}
	// Every message with a header Postfix would otherwise add to (it adds
	// Message-ID and Date where they are missing, which is its job, not
	// what is measured), and CRLF line ends as SMTP carries them.
	for i, m := range msgs {
		m = bytes.ReplaceAll(bytes.ReplaceAll(m, []byte("\r\n"), []byte("\n")), []byte("\n"), []byte("\r\n"))
		msgs[i] = append([]byte(fmt.Sprintf("X-Bench: %d\r\n", i)), m...)
	}
	return msgs, nil
}

// send sends msgs over conns connections at once, each message counted
// on its 250; any failure stops the run.
func send(addr string, msgs [][]byte, conns int) error {
	var next atomic.Int64
	errs := make(chan error, conns)
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := smtp.Dial(addr)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			if err := c.Hello("bench.example"); err != nil {
				errs <- err
				return
			}
			for {
				i := int(next.Add(1)) - 1
				if i >= len(msgs) {
					c.Quit()
					return
				}
				if err := c.SendMail("sender@example.org", []string{"rcpt@example.net"}, bytes.NewReader(msgs[i])); err != nil {
					errs <- fmt.Errorf("message %d: %w", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// waitMaildir waits until dir/new holds n files, at most a time that only
// a stuck server needs.
func waitMaildir(dir string, n int) error {
	deadline := time.Now().Add(10 * time.Minute)
	for {
		if count(filepath.Join(dir, "new")) >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s holds %d messages of %d after 10 minutes", dir, count(filepath.Join(dir, "new")), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func count(dir string) int {
	f, err := os.Open(dir)
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	for {
		names, err := f.Readdirnames(4096)
		n += len(names)
		if err != nil {
			return n
		}
	}
}

// measureMailflow runs "mailflow run" with an smtp input into a Maildir,
// from a fresh state, and sends msgs through it.
func measureMailflow(bin, work string, port int, afterDelivery bool, msgs [][]byte, conns int) (result, error) {
	dir := filepath.Join(work, "mailflow")
	os.RemoveAll(dir)
	os.MkdirAll(dir, 0o755)
	out := filepath.Join(dir, "out")
	answer := "after_spool"
	if afterDelivery {
		answer = "after_delivery"
	}
	conf := filepath.Join(dir, "mailflow.toml")
	os.WriteFile(conf, []byte(fmt.Sprintf(`state_dir = %q
[[input]]
name = "smtp"
type = "smtp"
pipeline = "main"
address = "127.0.0.1:%d"
answer = %q
[[pipeline]]
name = "main"
outputs = ["maildir"]
[[output]]
name = "maildir"
type = "maildir"
path = %q
`, filepath.Join(dir, "state"), port, answer, out)), 0o644)
	cmd := exec.Command(bin, "run", "-c", conf)
	if prof := os.Getenv("SMTPDBENCH_CPUPROFILE"); prof != "" {
		cmd.Env = append(os.Environ(), "MAILFLOW_CPUPROFILE="+prof)
	}
	logf, _ := os.Create(filepath.Join(dir, "log"))
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return result{}, err
	}
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if err := waitPort(addr); err != nil {
		return result{}, err
	}
	before := cpuOf([]int{cmd.Process.Pid})
	start := time.Now()
	if err := send(addr, msgs, conns); err != nil {
		return result{}, err
	}
	if err := waitMaildir(out, len(msgs)); err != nil {
		return result{}, err
	}
	wall := time.Since(start)
	return result{wall: wall, cpu: cpuOf([]int{cmd.Process.Pid}) - before}, nil
}

func waitPort(addr string) error {
	for range 400 {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(25 * time.Millisecond)
	}
	return fmt.Errorf("nothing listens on %s", addr)
}

// cpuOf is the CPU time used by the processes pids and their children that
// exited and were waited for (/proc/PID/stat utime, stime, cutime, cstime).
func cpuOf(pids []int) time.Duration {
	var ticks int64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// The fields after the command name, which is in parentheses.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
		for _, i := range []int{11, 12, 13, 14} { // utime stime cutime cstime
			v, _ := strconv.ParseInt(f[i], 10, 64)
			ticks += v
		}
	}
	return time.Duration(ticks) * time.Second / 100 // USER_HZ
}

// postfix is a private Postfix instance whose virtual(8) delivers every
// recipient into one Maildir.
type postfix struct {
	conf, queue, out string
	addr             string
	altSet           bool
	alt              string
}

func startPostfix(work string, port int) (*postfix, error) {
	if _, err := exec.LookPath("postfix"); err != nil {
		return nil, errors.New("postfix is not installed (.ci/testenv install)")
	}
	dir := filepath.Join(work, "postfix")
	p := &postfix{conf: filepath.Join(dir, "conf"), queue: filepath.Join(dir, "queue"), out: filepath.Join(dir, "out"), addr: fmt.Sprintf("127.0.0.1:%d", port)}
	data := filepath.Join(dir, "data")
	for _, d := range []string{p.conf, p.queue, data, p.out} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	uid, gid := "8", "8"
	if u, err := osuser.Lookup("mail"); err == nil {
		uid, gid = u.Uid, u.Gid
	}
	if err := exec.Command("chown", "postfix", data).Run(); err != nil {
		return nil, fmt.Errorf("chown postfix %s (run as root): %w", data, err)
	}
	if err := exec.Command("chown", uid+":"+gid, p.out).Run(); err != nil {
		return nil, err
	}
	main := fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %s
data_directory = %s
mail_owner = postfix
myhostname = smtpdbench.localdomain
mydestination =
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
virtual_mailbox_domains = static:all
virtual_mailbox_maps = static:Maildir/
virtual_mailbox_base = %s
virtual_uid_maps = static:%s
virtual_gid_maps = static:%s
virtual_minimum_uid = 1
virtual_mailbox_limit = 0
local_header_rewrite_clients =
smtpd_recipient_restrictions = permit_mynetworks, reject
maillog_file = %s/maillog
maillog_file_prefixes = %s
`, p.queue, data, p.out, uid, gid, dir, dir)
	if err := os.WriteFile(filepath.Join(p.conf, "main.cf"), []byte(main), 0o644); err != nil {
		return nil, err
	}
	// Debian's master.cf without its port-25 smtpd, chroot off (the
	// private queue is not set up as a chroot), and one smtpd of ours.
	src, err := os.ReadFile("/etc/postfix/master.cf")
	if err != nil {
		return nil, err
	}
	var master strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(src))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "smtp ") && strings.Contains(line, " inet ") {
			continue
		}
		if f := strings.Fields(line); len(f) >= 8 && line[0] != ' ' && line[0] != '\t' {
			f[4] = "n"
			line = strings.Join(f, " ")
		}
		master.WriteString(line + "\n")
	}
	fmt.Fprintf(&master, "%s inet n - n - - smtpd\n", p.addr)
	if err := os.WriteFile(filepath.Join(p.conf, "master.cf"), []byte(master.String()), 0o644); err != nil {
		return nil, err
	}
	// postfix -c DIR wants DIR in the default config's
	// alternate_config_directories; put it back as it was when done.
	alt, _ := exec.Command("postconf", "-nh", "alternate_config_directories").Output()
	p.alt, p.altSet = strings.TrimSpace(string(alt)), len(bytes.TrimSpace(alt)) > 0
	if out, err := exec.Command("postconf", "-e", "alternate_config_directories = "+strings.TrimSpace(p.alt+" "+p.conf)).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("postconf: %v %s", err, out)
	}
	start := exec.Command("postfix", "-c", p.conf, "start")
	start.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if out, err := start.CombinedOutput(); err != nil {
		p.stop()
		return nil, fmt.Errorf("postfix start: %v %s", err, out)
	}
	if err := waitPort(p.addr); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

func (p *postfix) stop() {
	exec.Command("postfix", "-c", p.conf, "stop").Run()
	if p.altSet {
		exec.Command("postconf", "-e", "alternate_config_directories = "+p.alt).Run()
	} else {
		exec.Command("postconf", "-X", "alternate_config_directories").Run()
	}
}

// pids are Postfix's master and its children.
func (p *postfix) pids() []int {
	b, err := os.ReadFile(filepath.Join(p.queue, "pid", "master.pid"))
	if err != nil {
		return nil
	}
	master, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	pids := []int{master}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		f := strings.Fields(string(st[bytes.LastIndexByte(st, ')')+2:]))
		if ppid, _ := strconv.Atoi(f[1]); ppid == master {
			pids = append(pids, pid)
		}
	}
	return pids
}

// cpu is what Postfix's processes used: the running ones', and through
// master's cutime, those that exited.
func (p *postfix) cpu() map[int]time.Duration {
	out := map[int]time.Duration{}
	for _, pid := range p.pids() {
		out[pid] = cpuOf([]int{pid})
	}
	return out
}

func (p *postfix) measure(msgs [][]byte, conns int) (result, error) {
	md := filepath.Join(p.out, "Maildir")
	os.RemoveAll(md)
	before := p.cpu()
	start := time.Now()
	if err := send(p.addr, msgs, conns); err != nil {
		return result{}, err
	}
	if err := waitMaildir(md, len(msgs)); err != nil {
		return result{}, err
	}
	wall := time.Since(start)
	after := p.cpu()
	var used time.Duration
	for pid, c := range after {
		used += c - before[pid]
	}
	for pid, c := range before {
		if _, ok := after[pid]; !ok {
			used -= c // its time is in master's cutime now, whole
		}
	}
	return result{wall: wall, cpu: used}, nil
}

func report(w io.Writer, o options, n int, total int64, modes []string, results map[string][]result) {
	host, _ := os.Hostname()
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Fprintf(w, "%s, on %s: %s, %d CPUs; load average before: %s\n\n", time.Now().Format("2006-01-02"), host, cpuModel(), runtime.NumCPU(), strings.Join(strings.Fields(string(load))[:3], " "))
	fmt.Fprintf(w, "%d messages (%s), %.1f MB, sent over %d connections at once to 127.0.0.1 and written to a Maildir in %s; median of %d runs, the modes alternating.\n\n", n, o.mix, float64(total)/1e6, o.conns, o.base, o.runs)
	fmt.Fprintln(w, "| mode | msgs/s | CPU s | CPU ms / msg | wall | wall, every run |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---|")
	for _, mode := range modes {
		rs := results[mode]
		if len(rs) == 0 {
			continue
		}
		sorted := slices.Clone(rs)
		sort.Slice(sorted, func(i, j int) bool { return sorted[i].wall < sorted[j].wall })
		med := sorted[len(sorted)/2]
		cpus := make([]time.Duration, len(rs))
		for i, r := range rs {
			cpus[i] = r.cpu
		}
		slices.Sort(cpus)
		cpu := cpus[len(cpus)/2]
		var walls []string
		for _, r := range rs {
			walls = append(walls, fmt.Sprintf("%.2f", r.wall.Seconds()))
		}
		fmt.Fprintf(w, "| %s | %.0f | %.2f | %.3f | %.2f s | %s |\n", mode, float64(n)/med.wall.Seconds(), cpu.Seconds(),
			cpu.Seconds()*1000/float64(n), med.wall.Seconds(), strings.Join(walls, " / "))
	}
	// The machine's load moves from one round to the next: a mode is
	// compared with Postfix (and "other" with "mailflow") round by round,
	// each round's two runs having been made one after the other.
	pairs := [][2]string{{"mailflow", "postfix"}, {"mailflow-after-delivery", "postfix"}, {"other", "postfix"}, {"other", "mailflow"}}
	for _, pr := range pairs {
		a, b := results[pr[0]], results[pr[1]]
		if len(a) == 0 || len(a) != len(b) {
			continue
		}
		var rates, cpus []float64
		for i := range a {
			rates = append(rates, b[i].wall.Seconds()/a[i].wall.Seconds())
			cpus = append(cpus, a[i].cpu.Seconds()/b[i].cpu.Seconds())
		}
		fmt.Fprintf(w, "\n%s/%s, round by round: rate %s (median **%.2f**); CPU %s (median **%.2f**)\n",
			pr[0], pr[1], ratios(rates), median(rates), ratios(cpus), median(cpus))
	}
}

func ratios(v []float64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprintf("%.2f", x)
	}
	return strings.Join(s, ", ")
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if name, ok := strings.CutPrefix(l, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(name), ":"))
		}
	}
	return runtime.GOARCH
}
