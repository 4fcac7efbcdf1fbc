// Package stage holds what every program of the pipeline does the same way:
// the common flags (-c/--config, --syslog, --listen, --connect), loading the
// configuration with its warnings logged, and the logger.
package stage

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/portsentry/pipeline/shared/alert"
	"github.com/portsentry/pipeline/shared/config"
	"github.com/portsentry/pipeline/shared/fleet"
	"github.com/portsentry/pipeline/shared/slice"
	"github.com/portsentry/pipeline/shared/suggest"
	"github.com/portsentry/pipeline/shared/transport"
	"github.com/urfave/cli/v2"
)

// Flag names shared by the programs.
const (
	FlagConfig  = "config"
	FlagSyslog  = "syslog"
	FlagListen  = "listen"
	FlagConnect = "connect"
)

// ConfigFlags are -c/--config and --syslog, which all four programs take.
func ConfigFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: FlagConfig, Aliases: []string{"c"}, Usage: "configuration `FILE` (default " + config.DefaultPath + ", or built-in defaults when it does not exist)"},
		&cli.BoolFlag{Name: FlagSyslog, Usage: "log to syslog instead of standard error"},
	}
}

// ListenFlag is --listen, for the stages that read event lines.
func ListenFlag() cli.Flag {
	return &cli.StringFlag{Name: FlagListen, Usage: "read event lines from writers connecting to the Unix socket `PATH` instead of standard input (ps-judge: or the hits of every sensor publishing to the NATS server nats://HOST:PORT)"}
}

// ConnectFlag is --connect, for the stages that write event lines.
func ConnectFlag() cli.Flag {
	return &cli.StringFlag{Name: FlagConnect, Usage: "write event lines to the Unix socket `PATH` instead of standard output, or publish them to the NATS server nats://HOST:PORT (tls://HOST:PORT)"}
}

// Setup opens the logger and loads the configuration named by the flags,
// logging its warnings. The caller closes the logger.
func Setup(c *cli.Context, prog string) (*config.Config, *alert.Logger, error) {
	log, err := alert.New(prog, c.Bool(FlagSyslog))
	if err != nil {
		return nil, nil, err
	}
	cfg, err := config.Load(c.String(FlagConfig), func(w string) { log.Admin("%s", w) })
	if err != nil {
		log.Close()
		return nil, nil, err
	}
	if cfg.Source == "" {
		log.Admin("%s %s starting: no %s, using built-in defaults", prog, Version(), config.DefaultPath)
	} else {
		log.Admin("%s %s starting: configuration read from %s", prog, Version(), cfg.Source)
	}
	// Every stage is on the path from a scanner's first probe to its
	// block: each one must run the moment its input arrives.
	if err := slice.Set(slice.Short); err != nil {
		log.Admin("%v: a woken stage may wait for a busy process's slice", err)
	}
	return cfg, log, nil
}

// OneProcessor runs the Go scheduler with one processor unless the
// GOMAXPROCS environment variable says otherwise. ps-judge and ps-block do
// their work in one goroutine fed by their input: more processors only add
// threads that the runtime wakes to look for work, each wake-up a context
// switch between a decision and the block. ps-sniff keeps the default: under
// a flood its second processor reads more packets (a 1,000,000-SYN flood:
// 585,000-680,000 read with one, 700,000-890,000 with two, 4 runs each).
func OneProcessor() {
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
}

// Output returns the Sink the flags name: --connect's socket, a NATS
// server (lines says what the stage writes: hits and results go out on
// core NATS, decisions into the fleet's stream), or stdout.
func Output(c *cli.Context, cfg *config.Config, log *alert.Logger, lines fleet.Lines) (*transport.Sink, error) {
	out, err := output(c, cfg, log, lines)
	if err == nil {
		if c.App.Metadata == nil {
			c.App.Metadata = map[string]any{}
		}
		c.App.Metadata[metaOutput] = out // for Main's check at the end
	}
	return out, err
}

// metaOutput is where Output leaves the Sink in the app's Metadata.
const metaOutput = "stage.output"

func output(c *cli.Context, cfg *config.Config, log *alert.Logger, lines fleet.Lines) (*transport.Sink, error) {
	p := c.String(FlagConnect)
	logf := func(format string, args ...any) { log.Admin(format, args...) }
	switch {
	case fleet.IsURL(p):
		host, err := fleet.HostName(&cfg.Fleet)
		if err != nil {
			return nil, Fatal("%v", err)
		}
		nc, err := fleet.Dial(p, &cfg.Fleet, c.App.Name+" on "+host, logf)
		if err != nil {
			return nil, Fatal("--connect: %v", err)
		}
		switch lines {
		case fleet.Decisions:
			o, err := fleet.NewOutbox(nc, host, c.App.Name, logf)
			if err != nil {
				nc.Close()
				return nil, Fatal("--connect: %v", err)
			}
			return transport.NewWriteCloser(o), nil
		case fleet.Results:
			return transport.NewWriteCloser(fleet.NewCore(nc, fleet.ResultSubject(host), logf)), nil
		}
		return transport.NewWriteCloser(fleet.NewCore(nc, fleet.HitSubject(host), logf)), nil
	case p != "":
		return transport.Connect(p, logf), nil
	}
	return transport.Stdout(), nil
}

// Fatal is the error a program's Action returns to stop with a message and
// exit status 1.
func Fatal(format string, args ...any) error {
	return cli.Exit(fmt.Sprintf(format, args...), 1)
}

// Main runs a program's app and exits 1, after a message naming the
// program, when it fails. Standard output carries event lines only: the
// help goes to standard error, and a usage error is one line there (with
// the flag it was likely meant to be) and exit status 2, so a mistyped
// flag never feeds the next stage of a pipeline a page of help.
func Main(app *cli.App) {
	action := app.Action
	app.Action = func(c *cli.Context) error {
		if c.Bool(flagVersion) {
			fmt.Printf("%s %s\n", app.Name, Version())
			return nil
		}
		if c.Bool(flagMan) {
			return printMan(app)
		}
		err := action(c)
		// Lines the output could not deliver make the exit status 1, once
		// the program has said everything else (closing again is a no-op
		// that returns the first Close's error).
		if out, ok := c.App.Metadata[metaOutput].(*transport.Sink); ok {
			if cerr := out.Close(); cerr != nil && err == nil {
				err = Fatal("%v", cerr)
			}
		}
		return err
	}
	app.Flags = append(app.Flags, &cli.BoolFlag{Name: flagVersion, Usage: "print the version and exit"},
		// The Makefile renders the manual page from the app itself, so the
		// page never drifts from the flags.
		&cli.BoolFlag{Name: flagMan, Hidden: true})
	app.HideVersion = true     // the flag above: cli's own would print on standard error, with "-v"
	app.HideHelpCommand = true // "help" is not a subcommand: --help is
	app.Writer = os.Stderr
	app.OnUsageError = func(_ *cli.Context, err error, _ bool) error {
		return usageError(app, "%v%s", err, flagHint(app, err))
	}
	// Subcommands (administration) print on standard output: an
	// administrator reads them, no stage does.
	for _, cmd := range app.Commands {
		cmd.HideHelpCommand = true
		cmd.OnUsageError = app.OnUsageError
	}
	// A stage takes no argument: a stray word that names no subcommand is
	// a mistake.
	app.Before = func(c *cli.Context) error {
		if c.NArg() > 0 && app.Command(c.Args().First()) == nil {
			return usageError(app, "unexpected argument %q", c.Args().First())
		}
		return nil
	}
	// Errors from Fatal too: print them with the program's name, which
	// tells which stage of a pipeline stopped.
	app.ExitErrHandler = func(_ *cli.Context, err error) {
		if err != nil {
			exit(app, err)
		}
	}
	if err := app.Run(os.Args); err != nil {
		exit(app, err)
	}
}

const (
	flagVersion = "version"
	flagMan     = "man"
)

// exitUsage is the status of a usage error, as for most Unix commands.
const exitUsage = 2

func exit(app *cli.App, err error) {
	fmt.Fprintf(os.Stderr, "%s: %v\n", app.Name, err)
	code := 1
	var ec cli.ExitCoder
	if errors.As(err, &ec) && ec.ExitCode() != 0 {
		code = ec.ExitCode()
	}
	os.Exit(code)
}

func usageError(app *cli.App, format string, args ...any) error {
	return cli.Exit(fmt.Sprintf(format, args...)+fmt.Sprintf(" (see %s --help)", app.Name), exitUsage)
}

// flagHint names the flag an unknown one was likely meant to be.
func flagHint(app *cli.App, err error) string {
	_, bad, found := strings.Cut(err.Error(), "flag provided but not defined: ")
	if !found {
		return ""
	}
	var names []string
	for _, f := range app.Flags {
		names = append(names, f.Names()...)
	}
	names = append(names, "help")
	if near, ok := suggest.Nearest(strings.TrimLeft(bad, "-"), names); ok {
		return fmt.Sprintf(": did you mean -%s?", near)
	}
	return ""
}

// version is set by the Makefile (-ldflags "-X ...stage.version=...") to
// `git describe` of the tree it built.
var version string

// Version is the build's version: the Makefile's, else what the Go
// toolchain recorded from version control (a module version, a commit),
// else "devel"; and the Go release.
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown (no build information)"
	}
	v := version
	if v == "" {
		v = bi.Main.Version
	}
	if v == "" || v == "(devel)" {
		v = "devel"
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				v += " " + s.Value
			}
		}
	}
	return v + " " + bi.GoVersion
}

// Serve feeds h the lines of --listen's socket or of standard input, until
// SIGINT or SIGTERM, the end of standard input, or an error on failed (the
// stage's own output has gone), and says which in its error.
func Serve(c *cli.Context, cfg *config.Config, h transport.Handler, log *alert.Logger, failed <-chan error) error {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	done := make(chan error, 1)
	if url := c.String(FlagListen); fleet.IsURL(url) {
		// Only hits come in over core NATS; ps-block follows the fleet's
		// decisions with --fleet, beside its own input.
		nc, err := fleet.Dial(url, &cfg.Fleet, c.App.Name, func(f string, a ...any) { log.Admin(f, a...) })
		if err != nil {
			return Fatal("--listen: %v", err)
		}
		defer nc.Close()
		if _, err := fleet.ReadHits(nc, h); err != nil {
			return Fatal("--listen: %v", err)
		}
		log.Admin("reading the hit lines of the fleet's sensors from %s", url)
	} else if path := c.String(FlagListen); path != "" {
		ln, err := transport.Listen(path, h, func(f string, a ...any) { log.Admin(f, a...) })
		if err != nil {
			return Fatal("%v%s", err, transport.DirHint(path))
		}
		defer ln.Close()
		log.Admin("reading event lines from %s", path)
	} else {
		go func() { done <- transport.Read(os.Stdin, "stdin", h) }()
	}
	select {
	case s := <-sigs:
		log.Admin("stopping on %v", s)
		return nil
	case err := <-failed:
		return Fatal("%v: stopping", err)
	case err := <-done:
		select { // the last flush, at the end of input, may have failed
		case ferr := <-failed:
			return Fatal("%v: stopping", ferr)
		default:
		}
		if err != nil {
			return Fatal("%v", err)
		}
		return nil
	}
}
