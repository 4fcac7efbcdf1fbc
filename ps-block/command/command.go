// Package command runs PortSentry 1.2's KILL_ROUTE, KILL_RUN_CMD and unroute
// strings without a shell: the string is split into argv once, when the
// configuration loads, and macros are substituted per argument with values
// the macro package checked. An attacker's bytes never meet a shell, and a
// command that hangs is killed with its whole process group.
package command

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/portsentry/pipeline/ps-block/gate"
	"github.com/portsentry/pipeline/ps-block/macro"
)

// Command is a template split into arguments.
type Command struct {
	key  string // the config key it came from, for messages
	argv []string
	undo bool // lifts a block (KILL_UNROUTE): needs no pass from the gate
}

// Parse splits s like a shell would split plain words: blanks separate,
// '...' is literal, "..." is literal except for \" and \\, and a backslash
// outside quotes escapes the next byte. Shell syntax that would need a shell
// (pipes, lists, redirections, substitutions, variables other than the
// three macros) is refused so a 1.2 config relying on it fails at load, not
// silently at the first attack. Errors do not name key: the caller says
// where the value came from (config.Config.KeyError).
func Parse(key, s string) (*Command, error) {
	var (
		argv  []string
		cur   strings.Builder
		inArg bool
	)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			if inArg {
				argv, inArg = append(argv, cur.String()), false
				cur.Reset()
			}
			continue
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unterminated ' in %q", s)
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '\\') {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, fmt.Errorf("unterminated \" in %q", s)
			}
		case c == '\\':
			if i+1 >= len(s) {
				return nil, fmt.Errorf("trailing backslash in %q", s)
			}
			i++
			cur.WriteByte(s[i])
		case strings.IndexByte("|&;<>`(){}*?[~\n\r", c) >= 0:
			return nil, fmt.Errorf("%q needs a shell (%q); ps-block runs commands without one: put it in a script", s, c)
		case c == '$':
			m := macroAt(s[i:])
			if m == "" {
				return nil, fmt.Errorf("%q uses a shell variable; only %s %s %s are substituted", s, macro.Target, macro.Port, macro.Mode)
			}
			cur.WriteString(m)
			i += len(m) - 1
		default:
			cur.WriteByte(c)
		}
		inArg = true
	}
	if inArg {
		argv = append(argv, cur.String())
	}
	if len(argv) == 0 {
		return nil, errors.New("the command is empty")
	}
	return &Command{key: key, argv: argv}, nil
}

// ParseUndo parses a command that lifts a block (KILL_UNROUTE): it can only
// make a host less blocked, so its arguments need no pass from the gate.
func ParseUndo(key, s string) (*Command, error) {
	c, err := Parse(key, s)
	if err != nil {
		return nil, err
	}
	c.undo = true
	return c, nil
}

// macroAt is the macro s starts with, or "".
func macroAt(s string) string {
	for _, m := range []string{macro.Target, macro.Port, macro.Mode} {
		if strings.HasPrefix(s, m) {
			return m
		}
	}
	return ""
}

// Key is the config key the command came from.
func (c *Command) Key() string { return c.key }

// Argv is the argument vector of a command that acts on a host
// (KILL_ROUTE, KILL_RUN_CMD), for the target the gate admitted: without
// the gate's Pass there is none.
func (c *Command) Argv(p gate.Pass) ([]string, error) {
	if !p.Valid() {
		return nil, fmt.Errorf("%s: %w", c.key, gate.ErrNoPass)
	}
	return c.expand(p.Vars()), nil
}

// UndoArgv is the argument vector of a command made by ParseUndo.
func (c *Command) UndoArgv(v macro.Vars) ([]string, error) {
	if !c.undo {
		return nil, fmt.Errorf("%s acts on a host: it takes the gate's pass, not UndoArgv", c.key)
	}
	return c.expand(v), nil
}

func (c *Command) expand(v macro.Vars) []string {
	out := make([]string, len(c.argv))
	for i, a := range c.argv {
		out[i] = v.ExpandPlain(a)
	}
	return out
}

// String is the template as parsed, for logs.
func (c *Command) String() string { return strings.Join(c.argv, " ") }

// Runner runs one argument vector; tests replace Exec with a fake.
type Runner interface {
	Run(ctx context.Context, argv []string) error
}

// Exec runs commands as child processes.
type Exec struct {
	Timeout time.Duration // per command; 0 means DefaultTimeout
}

// DefaultTimeout bounds a command that does not say how long it may take.
const DefaultTimeout = 30 * time.Second

// maxOutput is how much of a failing command's output goes into the error.
const maxOutput = 512

// childPath is where a command named without a slash is looked for.
const childPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// env is the whole environment of a child: a privileged program passes on
// none of its own.
var env = []string{"PATH=" + childPath, "LC_ALL=C"}

// lookPath finds prog as a child would be started: a name with a slash as
// it is, any other in childPath (not ps-block's own PATH, which children
// never see).
func lookPath(prog string) (string, error) {
	if strings.Contains(prog, "/") {
		if err := executable(prog); err != nil {
			return "", fmt.Errorf("%s: not found or not executable: %w", prog, err)
		}
		return prog, nil
	}
	for _, dir := range filepath.SplitList(childPath) {
		p := filepath.Join(dir, prog)
		if executable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: not found or not executable in %s", prog, childPath)
}

func executable(path string) error {
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		return errors.Unwrap(err)
	case fi.IsDir():
		return errors.New("a directory")
	case fi.Mode()&0o111 == 0:
		return errors.New("not executable")
	}
	return nil
}

// Check finds the program the command runs, so that a missing one (Debian
// 1.2's /sbin/route, gone from bookworm) is reported when ps-block starts,
// not at the first attack. A program named by a macro cannot be checked.
func (c *Command) Check() error {
	if strings.Contains(c.argv[0], "$") {
		return nil
	}
	_, err := lookPath(c.argv[0])
	return err
}

// Run starts argv in a process group of its own, waits at most the timeout,
// then kills the whole group. A zero exit status is success; anything else
// is an error carrying the status and the start of the output.
func (e Exec) Run(ctx context.Context, argv []string) error {
	if len(argv) == 0 {
		return errors.New("command: empty argv")
	}
	timeout := e.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	path, err := lookPath(argv[0])
	if err != nil {
		return fmt.Errorf("command: %w", err)
	}
	cmd := exec.CommandContext(ctx, path, argv[1:]...)
	cmd.Args[0] = argv[0]
	cmd.Env = env
	cmd.Dir = "/"
	var out bytes.Buffer
	// The child's output must never reach ps-block's stdout, which carries
	// event lines only.
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// A grandchild that keeps the output pipe open must not hold us.
	cmd.WaitDelay = time.Second
	err = cmd.Run()
	if ctx.Err() == context.DeadlineExceeded {
		return fmt.Errorf("command: %s: killed after %v timeout", argv[0], timeout)
	}
	if err != nil {
		msg := strings.TrimSpace(out.String())
		if len(msg) > maxOutput {
			msg = msg[:maxOutput] + "..."
		}
		if msg != "" {
			return fmt.Errorf("command: %s: %w: %s", argv[0], err, msg)
		}
		return fmt.Errorf("command: %s: %w", argv[0], err)
	}
	return nil
}
