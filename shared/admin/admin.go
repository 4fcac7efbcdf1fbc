// Package admin holds what the programs' administration subcommands (list,
// unblock, history, stats, check) share: their exit codes, human tables and
// --json output, and the client side of ps-judge's --admin socket.
package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
)

// Exit codes of the subcommands, for scripts. 2 is a usage error, as for
// every program (shared/stage).
const (
	ExitOK       = 0
	ExitError    = 1
	ExitNotFound = 3 // the address named has no record in force
)

// DefaultSocket is ps-judge's --admin socket in the shipped units.
const DefaultSocket = "/run/portsentry/admin.sock"

// Flag names of the subcommands.
const (
	FlagJSON  = "json"
	FlagAdmin = "admin"
)

// JSONFlag is --json.
func JSONFlag() cli.Flag {
	return &cli.BoolFlag{Name: FlagJSON, Usage: "print JSON (one document) for scripts instead of a table"}
}

// SocketFlag is --admin, the socket the subcommands reach ps-judge by.
func SocketFlag() cli.Flag {
	return &cli.StringFlag{Name: FlagAdmin, Value: DefaultSocket, Usage: "ps-judge's administrative socket `PATH` (its --admin)"}
}

// NotFound is the error of a subcommand that found nothing to act on.
func NotFound(format string, args ...any) error {
	return cli.Exit(fmt.Sprintf(format, args...), ExitNotFound)
}

// Print writes v as indented JSON with json, else the table rows (the
// first row is the header) aligned in columns.
func Print(w io.Writer, asJSON bool, v any, rows [][]string) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// Time is t for a table: local time to the second, or def when t is zero.
func Time(t time.Time, def string) string {
	if t.IsZero() {
		return def
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

// Send writes lines to ps-judge's admin socket at path. ErrNotRunning
// (wrapped) says no process listens there.
func Send(path string, lines [][]byte) error {
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("%w: %v", ErrNotRunning, err)
		}
		return fmt.Errorf("admin socket: %w", err)
	}
	defer c.Close()
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	for _, l := range lines {
		if _, err := c.Write(l); err != nil {
			return fmt.Errorf("admin socket %s: %w", path, err)
		}
	}
	return nil
}

// ErrNotRunning: nothing listens on the admin socket.
var ErrNotRunning = errors.New("ps-judge is not listening on its admin socket")
