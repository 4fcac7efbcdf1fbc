package tests

import (
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portsentry/pipeline/shared/event"
)

// advHostile is one hostile input line and what a stage must say of it:
// refused at input with its line number, or read but refused by the guard.
type advHostile struct {
	name  string
	line  string
	guard string // a well-formed line naming this never-blocked address ("" for none)
}

// advHostileLines are hand-written attacks on a line reader, built for the
// kind of line the stage reads ("block" for ps-block, "hit" for ps-judge),
// so that each reaches the field it attacks.
func advHostileLines(kind, marker string) []advHostile {
	line := func(target, port string) string {
		if kind == "hit" {
			// A hit's src and dst are of one family (an IPv4-mapped src
			// counts as IPv4), or the line is refused before the guard.
			dst := "198.18.0.2"
			if a, err := netip.ParseAddr(target); err == nil && a.Is6() && !a.Is4In6() {
				dst = "2001:db8::2"
			}
			return `{"v":1,"kind":"hit","time":"2026-11-24T00:00:00Z","sensor":"x","mode":"atcp","proto":"tcp","src":"` + target +
				`","sport":40000,"dst":"` + dst + `","dport":` + port + `,"scan":"syn","flags":"S"}`
		}
		return `{"v":1,"kind":"block","time":"2026-11-24T00:00:00Z","target":"` + target + `","mode":"atcp","proto":"tcp","port":` + port + `,"scan":"syn","hits":1}`
	}
	addr := "198.18.250.1"
	touch := "touch " + marker
	hs := []advHostile{
		{name: "semicolon", line: line(addr+"; "+touch, "21")},
		{name: "command substitution", line: line("$("+touch+")", "21")},
		{name: "backquotes", line: line("`"+touch+"`", "21")},
		{name: "pipe", line: line(addr+"|"+touch, "21")},
		{name: "escaped newline", line: line(addr+`\n`+touch, "21")},
		{name: "escaped carriage return", line: line(addr+`\r`+"ALL: ALL", "21")},
		{name: "escaped NUL", line: line(addr+`\u0000`, "21")},
		{name: "raw NUL", line: line(addr+"\x00", "21")},
		{name: "invalid UTF-8", line: line("198.18.250.\xff", "21")},
		{name: "overlong UTF-8 slash", line: line(addr+"\xc0\xaf", "21")},
		{name: "macro in target", line: line("$TARGET$", "21")},
		{name: "zone", line: line("fe80::1%eth0", "21")},
		{name: "prefix", line: line(addr+"/0", "21")},
		{name: "bracketed", line: line("["+addr+"]", "21")},
		{name: "leading zeros", line: line("198.018.250.001", "21")},
		{name: "name not address", line: line("ALL", "21")},
		{name: "huge port", line: line(addr, "99999999999999999999999999")},
		{name: "float port", line: line(addr, "1e400")},
		{name: "negative port", line: line(addr, "-1")},
		{name: "port 65536", line: line(addr, "65536")},
		{name: "port as string", line: line(addr, `"21; `+touch+`"`)},
		{name: "mode metacharacter", line: strings.Replace(line(addr, "21"), `"mode":"atcp"`, `"mode":"atcp;`+touch+`"`, 1)},
		{name: "mode macro", line: strings.Replace(line(addr, "21"), `"mode":"atcp"`, `"mode":"$MODE$"`, 1)},
		{name: "unknown version", line: strings.Replace(line(addr, "21"), `"v":1`, `"v":2`, 1)},
		{name: "huge version", line: strings.Replace(line(addr, "21"), `"v":1`, `"v":18446744073709551617`, 1)},
		{name: "unknown kind", line: strings.Replace(line(addr, "21"), `"kind":"`+kind+`"`, `"kind":"exec"`, 1)},
		{name: "bad time", line: strings.Replace(line(addr, "21"), "2026-11-24T00:00:00Z", "99999-99-99T99:99:99Z", 1)},
		{name: "truncated object", line: `{"v":1,"kind":"` + kind + `","target":"` + addr},
		{name: "not an object", line: `["` + touch + `"]`},
		{name: "deep nesting", line: strings.Repeat("[", 2000) + strings.Repeat("]", 2000)},
		{name: "empty line", line: ""},
		{name: "blanks", line: " \t "},
		{name: "1 MiB line", line: strings.Repeat("A", 1<<20)},
		{name: "1 MiB object", line: strings.Replace(line(addr, "21"), `"v":1`, `"v":1,"pad":"`+strings.Repeat("x", 1<<20)+`"`, 1)},
		{name: "unspecified", line: line("0.0.0.0", "21"), guard: "0.0.0.0"},
		{name: "loopback", line: line("127.0.0.1", "21"), guard: "127.0.0.1"},
		{name: "broadcast", line: line("255.255.255.255", "21"), guard: "255.255.255.255"},
		{name: "multicast", line: line("ff02::1", "21"), guard: "ff02::1"},
		{name: "mapped loopback", line: line("::ffff:127.0.0.1", "21"), guard: "::ffff:127.0.0.1"},
	}
	if kind == "hit" {
		// A decision sent to the judge is not a hit.
		hs = append(hs, advHostile{name: "decision to judge", line: `{"v":1,"kind":"block","time":"2026-11-24T00:00:00Z","target":"` + addr + `","mode":"atcp","proto":"tcp","port":21,"scan":"syn","hits":1}`})
	} else {
		hs = append(hs,
			advHostile{name: "hit to blocker", line: `{"v":1,"kind":"hit","time":"2026-11-24T00:00:00Z","sensor":"x","mode":"atcp","proto":"tcp","src":"` + addr + `","sport":1,"dst":"198.18.0.2","dport":21,"scan":"syn"}`},
			advHostile{name: "result loop", line: `{"v":1,"kind":"result","time":"2026-11-24T00:00:00Z","target":"` + addr + `","mode":"atcp","action":"run","ok":true,"detail":"x"}`},
		)
	}
	return hs
}

// advFuzzLines are the inputs the event decoder's fuzzer kept (its corpus
// and crashers) that the decoder refuses: each must be refused by a whole
// program too.
func advFuzzLines(t *testing.T) []advHostile {
	t.Helper()
	files, _ := filepath.Glob("../shared/event/testdata/fuzz/*/*")
	var out []advHostile
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		// go test fuzz v1, then one []byte("...") or string("...") line.
		for _, l := range strings.Split(string(b), "\n")[1:] {
			l = strings.TrimSpace(l)
			i := strings.IndexByte(l, '(')
			if i < 0 || !strings.HasSuffix(l, ")") {
				continue
			}
			s, err := strconv.Unquote(l[i+1 : len(l)-1])
			if err != nil || strings.Contains(s, "\n") {
				continue
			}
			if _, err := event.Decode([]byte(s)); err == nil {
				continue // a well-formed line is not hostile
			}
			out = append(out, advHostile{name: "fuzz " + filepath.Base(f), line: s})
		}
	}
	return out
}

// advFeed writes lines 15 at a time, each group once the stage has
// reported the lines before it (or after 10 s) and 1.1 s later: the logs'
// rate limit (20 lines a second) then never sees two groups in one second,
// however slowly the stage starts or reads under load.
func advFeed(w io.WriteCloser, lines []string, reported func() int) {
	defer w.Close()
	for i := 0; i < len(lines); i += 15 {
		if i > 0 {
			for end := time.Now().Add(10 * time.Second); reported() < i && time.Now().Before(end); {
				time.Sleep(20 * time.Millisecond)
			}
			time.Sleep(1100 * time.Millisecond)
		}
		for _, l := range lines[i:min(i+15, len(lines))] {
			if _, err := io.WriteString(w, l+"\n"); err != nil {
				return
			}
		}
	}
}

// advReported counts the lines of a stage's log that report an input line:
// refused by its number, or by the guard.
func advReported(stderr string) int {
	b, _ := os.ReadFile(stderr) // not there yet: nothing reported
	return len(advReportRE.FindAll(b, -1))
}

var advReportRE = regexp.MustCompile(`stdin line [0-9]+: |refusing to block | ignored: `)

// TestAdvHostileLines sends hand-written and fuzz-found hostile lines into
// ps-judge and ps-block, whose KILL_RUN_CMD touches a marker file: no
// hostile line may run anything or write any file, none may crash a
// stage, and each must be reported on stderr with its line number (or,
// for a well-formed line naming a never-blocked address, refused by the
// guard). A valid control line at the end proves the command does run.
func TestAdvHostileLines(t *testing.T) {
	fuzz := advFuzzLines(t)
	for _, kind := range []string{"block", "hit"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			runs := filepath.Join(dir, "runs")
			if err := os.Mkdir(runs, 0o755); err != nil {
				t.Fatal(err)
			}
			marker := filepath.Join(runs, "PWNED")
			deny := writeFile(t, dir, "hosts.deny", "# hosts.deny\n")
			conf := advConf(t, dir, "p.conf", map[string]string{
				"SCAN_TRIGGER":    "0",
				"NFT_BLOCK":       "0",
				"BLOCK_RATE":      "1000000",
				"IGNORE_FILE":     filepath.Join(dir, "ignore"),
				"BLOCKED_FILE":    filepath.Join(dir, "blocked"),
				"HISTORY_FILE":    filepath.Join(dir, "history"),
				"KILL_HOSTS_DENY": "ALL: $TARGET$",
				"HOSTS_DENY_FILE": deny,
				"KILL_RUN_CMD":    "touch " + runs + "/ran-$TARGET$-$PORT$-$MODE$",
			})
			hs := append(advHostileLines(kind, marker), fuzz...)
			var lines []string
			for _, h := range hs {
				lines = append(lines, h.line)
			}
			// The control: a valid line that must go through.
			control := advDecision("block", "198.18.250.100", 21)
			if kind == "hit" {
				control = hitLine("198.18.250.100", 21, time.Now())
			}
			lines = append(lines, strings.TrimSuffix(control, "\n"))

			prog := map[string]string{"block": "ps-block", "hit": "ps-judge"}[kind]
			cmd := advCommand("", prog, "-c", conf)
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			var stdout bytes.Buffer
			cmd.Stdout = &stdout
			s := advStart(t, dir, prog, cmd)
			go advFeed(stdin, lines, func() int { return advReported(s.stderr) })
			select {
			case <-s.done:
			case <-time.After(60 * time.Second):
				t.Fatalf("%s still running 60s after its input began", prog)
			}
			log := s.log(t)
			if s.err != nil || strings.Contains(log, "panic") {
				t.Fatalf("%s: exit %v\n%s", prog, s.err, log)
			}
			// Each guard refusal is its own log line naming the address (an
			// IPv4-mapped one unmapped): count them by address.
			refusals := map[string]int{}
			for _, l := range strings.Split(log, "\n") {
				if !strings.Contains(l, "refusing to block ") && !strings.Contains(l, " ignored: ") {
					continue
				}
				for _, h := range hs {
					if a := advUnmapped(h.guard); a != "" && (strings.Contains(l, "block "+a+":") || strings.Contains(strings.ToLower(l), "host: "+a+"/"+a+" ")) {
						refusals[a]++
						break
					}
				}
			}
			for i, h := range hs {
				n := i + 1
				if h.guard != "" {
					a := advUnmapped(h.guard)
					if refusals[a] == 0 {
						t.Errorf("line %d (%s): no guard refusal naming %s in the log", n, h.name, a)
					}
					refusals[a]-- // two lines for one address need two refusals
					continue
				}
				if want := fmt.Sprintf("stdin line %d: ", n); !strings.Contains(log, want) {
					t.Errorf("line %d (%s) not reported: no %q on stderr", n, h.name, want)
				}
			}
			// Nothing but the control ran, and the stage wrote nothing else.
			got, _ := filepath.Glob(filepath.Join(runs, "*"))
			if kind == "block" {
				want := []string{filepath.Join(runs, "ran-198.18.250.100-21-atcp")}
				if !slices.Equal(got, want) {
					t.Errorf("files made by KILL_RUN_CMD: %q, want only %q", got, want)
				}
				if d := advLines(t, deny); !slices.Equal(d, []string{"# hosts.deny", "ALL: 198.18.250.100"}) {
					t.Errorf("hosts.deny:\n%s", strings.Join(d, "\n"))
				}
				// One result per line: every refusal is reported downstream too.
				bad := 0
				for _, l := range strings.Split(stdout.String(), "\n") {
					if strings.Contains(l, `"ok":false`) {
						bad++
					}
				}
				if bad != len(hs) {
					t.Errorf("%d results with ok:false for %d hostile lines:\n%s", bad, len(hs), stdout.String())
				}
			} else {
				if len(got) != 0 {
					t.Errorf("ps-judge made files: %q", got)
				}
				if out := strings.TrimSpace(stdout.String()); strings.Count(out, "\n") != 0 || !strings.Contains(out, `"target":"198.18.250.100"`) {
					t.Errorf("decisions: want only the control's:\n%s", out)
				}
			}
			if _, err := os.Stat(marker); err == nil {
				t.Errorf("a hostile line ran a command: %s exists", marker)
			}
			if t.Failed() {
				t.Logf("stderr:\n%s\nstdout:\n%s", log, stdout.String())
			}
		})
	}
}

// advUnmapped is addr as the stages log it: an IPv4-mapped IPv6 address as
// IPv4 ("" stays "").
func advUnmapped(addr string) string {
	if addr == "" {
		return ""
	}
	return netip.MustParseAddr(addr).Unmap().String()
}
