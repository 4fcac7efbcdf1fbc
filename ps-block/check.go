package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/user"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/portsentry/pipeline/ps-block/nft"
	"github.com/portsentry/pipeline/shared/alert"
	"github.com/portsentry/pipeline/shared/config"
	"github.com/portsentry/pipeline/shared/stage"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
)

// checkCommand is `ps-block check`, like `sshd -t`.
func checkCommand() *cli.Command {
	return &cli.Command{
		Name: "check",
		Usage: "check the configuration and what it needs, change nothing: every key, the record files and their directory, the commands, hosts.deny, " +
			"the ignore file, and what the kernel offers (nftables, packet sockets); each problem with file, line and key; exit 0 when none, 1 otherwise",
		UsageText: "ps-block check [-c FILE] [--user NAME]",
		Flags: []cli.Flag{stage.ConfigFlags()[0],
			&cli.StringFlag{Name: "user", Usage: "check that `NAME` can write what ps-block writes (default: the User= of an installed ps-block.service, else the current user)"}},
		Action: func(c *cli.Context) error {
			u, err := checkUser(c.String("user"))
			if err != nil {
				return stage.Fatal("%v", err)
			}
			errs, warns := check(c.String(stage.FlagConfig), u)
			return report(os.Stdout, c.String(stage.FlagConfig), errs, warns)
		},
	}
}

// check runs the checks of a start (config.Load, then the actions and
// startChecks as a dry run) and those of the kernel.
func check(path string, u *user.User) (errs []error, warns []string) {
	cfg, err := config.Load(path, func(w string) { warns = append(warns, w) })
	if err != nil {
		return unjoin(err), warns
	}
	// The start's checks below answer for this process's user; another
	// user's answers come from the kernel on a thread with its identity.
	if u.Uid != strconv.Itoa(os.Geteuid()) {
		warns = append(warns, fmt.Sprintf("the files were checked for user %s (uid %s); the rest for this process's user", u.Username, u.Uid))
		errs = append(errs, userChecks(cfg, u)...)
	}
	var logBuf bytes.Buffer
	log := alert.NewWriter("ps-block", &logBuf)
	if _, closeNFT, err := actions(cfg, true, log); err != nil {
		errs = append(errs, unjoin(err)...)
	} else {
		closeNFT()
	}
	for _, l := range strings.Split(strings.TrimSpace(logBuf.String()), "\n") {
		if _, msg, ok := strings.Cut(l, "adminalert: "); ok {
			warns = append(warns, msg)
		}
	}
	if cfg.IgnoreFile != "" {
		if fi, err := os.Lstat(cfg.IgnoreFile); err != nil {
			warns = append(warns, fmt.Sprintf("IGNORE_FILE %s: %v: no host is ignored but this host's own addresses and what it depends on", cfg.IgnoreFile, err))
		} else if !fi.Mode().IsRegular() {
			errs = append(errs, cfg.KeyError("IGNORE_FILE", fmt.Errorf("%s is not a regular file", cfg.IgnoreFile)))
		}
	}
	if cfg.NFTBlock {
		if err := nftablesWork(); err != nil {
			errs = append(errs, cfg.KeyError("NFT_BLOCK", fmt.Errorf("nftables: %w", err)))
		}
	}
	if fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0); err != nil {
		warns = append(warns, fmt.Sprintf("kernel: no packet socket for this user (%v): ps-sniff's modes need one (CAP_NET_RAW)", err))
	} else {
		unix.Close(fd)
	}
	return errs, warns
}

// nftablesWork opens a netlink connection to nftables and lists the
// tables: what ps-block does first.
func nftablesWork() error {
	conn, err := nft.Open(0)
	if err != nil {
		return err
	}
	defer conn.CloseLasting()
	_, err = conn.ListTablesOfFamily(nftables.TableFamilyINet)
	return err
}

// unjoin splits errors.Join's list.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func report(w io.Writer, path string, errs []error, warns []string) error {
	for _, m := range warns {
		fmt.Fprintf(w, "warning: %s\n", m)
	}
	for _, e := range errs {
		fmt.Fprintf(w, "error: %v\n", e)
	}
	if path == "" {
		path = config.DefaultPath
	}
	if len(errs) > 0 {
		return stage.Fatal("%s: %d problem(s)", path, len(errs))
	}
	fmt.Fprintf(w, "%s: configuration OK (%d warning(s))\n", path, len(warns))
	return nil
}
