package command

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portsentry/pipeline/ps-block/gate"
	"github.com/portsentry/pipeline/shared/event"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr string
	}{
		{"/sbin/route add -host $TARGET$ reject", []string{"/sbin/route", "add", "-host", "$TARGET$", "reject"}, ""},
		{"  /sbin/iptables  -I INPUT -s $TARGET$ -j DROP ", []string{"/sbin/iptables", "-I", "INPUT", "-s", "$TARGET$", "-j", "DROP"}, ""},
		{`/usr/bin/logger 'port $PORT$; mode' "a \"b\" \\c" x\ y`, []string{"/usr/bin/logger", "port $PORT$; mode", `a "b" \c`, "x y"}, ""},
		{`a ''`, []string{"a", ""}, ""},
		{"", nil, "empty"},
		{"   ", nil, "empty"},
		{"/sbin/iptables -I INPUT -s $TARGET$ -j DROP && echo", nil, "needs a shell"},
		{"echo $TARGET$ | mail root", nil, "needs a shell"},
		{"echo $HOME", nil, "shell variable"},
		{"echo `id`", nil, "needs a shell"},
		{"echo $(id)", nil, "shell variable"},
		{"echo 'open", nil, "unterminated '"},
		{`echo "open`, nil, `unterminated "`},
		{`echo \`, nil, "trailing backslash"},
	}
	for _, tc := range tests {
		c, err := Parse("KILL_ROUTE", tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Parse(%q) err = %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.in, err)
			continue
		}
		if !slices.Equal(c.argv, tc.want) {
			t.Errorf("Parse(%q) = %q, want %q", tc.in, c.argv, tc.want)
		}
	}
}

func TestArgv(t *testing.T) {
	c, err := Parse("KILL_RUN_CMD", "/bin/echo $TARGET$ port=$PORT$ $MODE$")
	if err != nil {
		t.Fatal(err)
	}
	p, err := gate.New(nil).Admit(netip.MustParseAddr("2001:db8::1"), 139, event.ModeSUDP, gate.Decision)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/bin/echo", "2001:db8::1", "port=139", "sudp"}
	if got, err := c.Argv(p); err != nil || !slices.Equal(got, want) {
		t.Errorf("Argv = %q, %v, want %q", got, err, want)
	}
	// No act without the gate's pass, and an acting command cannot be
	// expanded as an undo to get round it.
	if got, err := c.Argv(gate.Pass{}); err == nil || got != nil {
		t.Errorf("Argv without a pass = %q, %v, want an error", got, err)
	}
	if got, err := c.UndoArgv(p.Vars()); err == nil || got != nil {
		t.Errorf("UndoArgv of KILL_RUN_CMD = %q, %v, want an error", got, err)
	}
	u, err := ParseUndo("KILL_UNROUTE", "/sbin/ip route del $TARGET$")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := u.UndoArgv(p.Vars()); err != nil || !slices.Equal(got, []string{"/sbin/ip", "route", "del", "2001:db8::1"}) {
		t.Errorf("UndoArgv = %q, %v", got, err)
	}
}

// The arguments reach the program exactly, one argv element each, with no
// shell in between.
func TestExecArgvExact(t *testing.T) {
	script, err := filepath.Abs("testdata/argv.sh")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "argv")
	c, err := Parse("KILL_RUN_CMD", script+" "+out+" $TARGET$ $PORT$ $MODE$ 'a b'")
	if err != nil {
		t.Fatal(err)
	}
	p, _ := gate.New(nil).Admit(netip.MustParseAddr("198.18.0.1"), 21, event.ModeATCP, gate.Decision)
	argv, err := c.Argv(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := (Exec{Timeout: 5 * time.Second}).Run(context.Background(), argv); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), "198.18.0.1\n21\natcp\na b\n"; got != want {
		t.Errorf("program saw %q, want %q", got, want)
	}
}

func TestExecOutcomes(t *testing.T) {
	tests := []struct {
		name    string
		argv    []string
		wantErr string
	}{
		{"success", []string{"true"}, ""},
		{"exit status", []string{"sh", "-c", "echo nope >&2; exit 3"}, "exit status 3: nope"},
		{"missing", []string{"/nonexistent/ps-block-route"}, "not found or not executable"},
		{"missing in PATH", []string{"ps-block-no-such-command"}, "not found or not executable"},
		{"hangs", []string{"sleep", "30"}, "killed after 200ms timeout"},
		// A grandchild in the same group is killed too, and its open pipe
		// does not keep Run waiting.
		{"hangs with child", []string{"sh", "-c", "sleep 30 & sleep 30"}, "killed after 200ms timeout"},
		{"empty", nil, "empty argv"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			err := Exec{Timeout: 200 * time.Millisecond}.Run(context.Background(), tc.argv)
			if took := time.Since(start); took > 3*time.Second {
				t.Errorf("took %v", took)
			}
			if tc.wantErr == "" {
				if err != nil {
					t.Errorf("err %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("err %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// A program that is not there is found when ps-block starts, as a child
// would look for it (Debian 1.2's KILL_ROUTE="/sbin/route ..." on bookworm).
func TestCheck(t *testing.T) {
	plain := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(plain, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		cmd, want string // want: "" for no error
	}{
		{"/bin/true $TARGET$", ""},
		{"true $TARGET$", ""},
		{"/nonexistent/route add -host $TARGET$ reject", "/nonexistent/route: not found or not executable"},
		{"ps-block-no-such-command $TARGET$", "not found or not executable in /usr/local/sbin:"},
		{"/etc $TARGET$", "a directory"},
		{plain + " $TARGET$", "not executable"},
		{"$TARGET$", ""},
	}
	for _, tc := range tests {
		c, err := Parse("KILL_ROUTE", tc.cmd)
		if err != nil {
			t.Fatal(err)
		}
		err = c.Check()
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("Check(%q) = %v, want %q", tc.cmd, err, tc.want)
		}
	}
}
