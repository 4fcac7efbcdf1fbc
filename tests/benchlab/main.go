// Command benchlab is the measuring half of tests/bench.sh (make bench): the
// few things a shell cannot time or count precisely.
//
//	benchlab decisions -n N
//	    writes N block decision lines, each for a distinct target (half IPv4
//	    from 198.18.0.0/15, half IPv6 from 2001:db8::/32), mode atcp.
//	benchlab records -n N -base PATH
//	    writes ps-block's records of N blocks in force, each for a distinct
//	    target (the first 131,072 IPv4 from 198.18.0.0/15, the rest IPv6
//	    from 2001:db8::/32), mode atcp: PATH.atcp (1.2's blocked-file lines)
//	    and PATH.until (each ending in 2099), as ps-block would have left
//	    them.
//	benchlab run [-in FILE] [-out FILE] [-limit D] -- CMD ARGS...
//	    runs CMD with stdin from FILE and stdout to FILE (default /dev/null)
//	    and prints one line: "wall_s cpu_s maxrss_kib exit_status".
//	benchlab feed -in FILE -want N [-limit D] -- CMD ARGS...
//	    starts CMD, writes FILE to its stdin as fast as it takes it, and reads
//	    its stdout; prints one line: "seconds results ok maxrss_kib", seconds
//	    from the first byte written to the moment the N-th result line was
//	    read (or CMD's output ended).
//	benchlab relay -log FILE [-n N]
//	    copies lines from stdin to stdout one at a time, unbuffered, and
//	    writes the arrival time (Unix ns) and the first 120 bytes of each of
//	    the first N lines (default 3) to FILE: a probe between two stages of
//	    the pipeline, to see where the time goes.
//
// Every run is bounded by -limit (default 120 s): past it CMD is killed.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/portsentry/pipeline/shared/event"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "decisions":
		err = decisions(os.Args[2:])
	case "records":
		err = records(os.Args[2:])
	case "run":
		err = run(os.Args[2:])
	case "feed":
		err = feed(os.Args[2:])
	case "relay":
		err = relay(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchlab:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: benchlab decisions -n N | run [-in F] [-out F] -- CMD... | feed -in F -want N -- CMD...")
	os.Exit(2)
}

// decisions writes n block lines for n distinct targets.
func decisions(args []string) error {
	fs := flag.NewFlagSet("decisions", flag.ExitOnError)
	n := fs.Int("n", 100_000, "decision lines to write")
	_ = fs.Parse(args)
	if *n > 1<<17 {
		return fmt.Errorf("at most %d distinct IPv4 targets fit 198.18.0.0/15", 1<<17)
	}
	w := bufio.NewWriterSize(os.Stdout, 1<<20)
	e := event.Event{Kind: event.KindBlock, Time: time.Date(2026, 11, 24, 14, 0, 0, 0, time.UTC),
		Mode: event.ModeATCP, Proto: event.ProtoTCP, Scan: event.ScanSYN, Port: 21, Hits: 1}
	var buf []byte
	for i := 0; i < *n; i++ {
		if i%2 == 0 {
			e.Target = netip.AddrFrom4([4]byte{198, 18 + byte(i>>16), byte(i >> 8), byte(i)})
		} else {
			e.Target = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0xbe, 0x4c, 13: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)})
		}
		buf = event.Append(buf[:0], &e)
		if _, err := w.Write(buf); err != nil {
			return err
		}
	}
	return w.Flush()
}

// records writes the blocked and until files of n blocks in force.
func records(args []string) error {
	fs := flag.NewFlagSet("records", flag.ExitOnError)
	n := fs.Int("n", 1_000_000, "blocks")
	base := fs.String("base", "", "BLOCKED_FILE")
	_ = fs.Parse(args)
	if *base == "" {
		return errors.New("records: -base is required")
	}
	bf, err := os.OpenFile(*base+".atcp", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	uf, err := os.OpenFile(*base+".until", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	bw, uw := bufio.NewWriterSize(bf, 1<<20), bufio.NewWriterSize(uf, 1<<20)
	start := time.Date(2026, 11, 24, 14, 0, 0, 0, time.UTC)
	end := time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC).Format(time.RFC3339)
	for i := 0; i < *n; i++ {
		var a netip.Addr
		if i < 1<<17 {
			a = netip.AddrFrom4([4]byte{198, 18 + byte(i>>16), byte(i >> 8), byte(i)})
		} else {
			a = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0x4e, 0xc0, 12: byte(i >> 24), 13: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)})
		}
		t := start.Add(time.Duration(i) * 20 * time.Millisecond) // 50 a second
		fmt.Fprintf(bw, "%d - %02d/%02d/%04d %02d:%02d:%02d Host: %s/%s Port: 21 TCP Blocked\n",
			t.Unix(), t.Month(), t.Day(), t.Year(), t.Hour(), t.Minute(), t.Second(), a, a)
		fmt.Fprintf(uw, "%s atcp %s\n", a, end)
	}
	for _, err := range []error{bw.Flush(), uw.Flush(), bf.Close(), uf.Close()} {
		if err != nil {
			return err
		}
	}
	return nil
}

func command(ctx context.Context, argv []string) (*exec.Cmd, error) {
	if len(argv) == 0 {
		return nil, errors.New("no command given")
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stderr = os.Stderr
	cmd.WaitDelay = 2 * time.Second
	return cmd, nil
}

func usage2(ps *os.ProcessState) (cpu float64, maxrss int64) {
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
		maxrss = ru.Maxrss // KiB on Linux
	}
	return cpu, maxrss
}

// run times one command end to end.
func run(args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	in := fs.String("in", "/dev/null", "file for the command's stdin")
	out := fs.String("out", "/dev/null", "file for the command's stdout")
	limit := fs.Duration("limit", 120*time.Second, "kill the command after this long")
	_ = fs.Parse(args)
	ctx, cancel := context.WithTimeout(context.Background(), *limit)
	defer cancel()
	cmd, err := command(ctx, fs.Args())
	if err != nil {
		return err
	}
	fi, err := os.Open(*in)
	if err != nil {
		return err
	}
	defer fi.Close()
	fo, err := os.Create(*out)
	if err != nil {
		return err
	}
	defer fo.Close()
	cmd.Stdin, cmd.Stdout = fi, fo
	t0 := time.Now()
	err = cmd.Run()
	wall := time.Since(t0)
	if cmd.ProcessState == nil {
		return err
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%s killed after %v", fs.Arg(0), *limit)
	}
	cpu, rss := usage2(cmd.ProcessState)
	fmt.Printf("%.4f %.4f %d %d\n", wall.Seconds(), cpu, rss, cmd.ProcessState.ExitCode())
	return nil
}

// feed times from the first line written to the want-th result line read.
func feed(args []string) error {
	fs := flag.NewFlagSet("feed", flag.ExitOnError)
	in := fs.String("in", "", "file of lines to write to the command's stdin")
	want := fs.Int("want", 0, "result lines to wait for")
	limit := fs.Duration("limit", 120*time.Second, "kill the command after this long")
	_ = fs.Parse(args)
	data, err := os.ReadFile(*in)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *limit)
	defer cancel()
	cmd, err := command(ctx, fs.Args())
	if err != nil {
		return err
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	// Give the command time to start (open netlink, restore its state)
	// before the clock starts: start-up is not what is measured. It says
	// it is ready on stderr, but a fixed pause is simpler and costs nothing
	// measured.
	time.Sleep(500 * time.Millisecond)
	t0 := time.Now()
	werr := make(chan error, 1)
	go func() {
		_, err := stdin.Write(data)
		werr <- err
	}()
	var elapsed time.Duration
	results, ok := 0, 0
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Bytes()
		if !bytes.Contains(l, []byte(`"kind":"result"`)) {
			continue
		}
		results++
		if bytes.Contains(l, []byte(`"ok":true`)) {
			ok++
		}
		if results == *want {
			elapsed = time.Since(t0)
			break
		}
	}
	if elapsed == 0 {
		elapsed = time.Since(t0)
	}
	if err := <-werr; err != nil {
		return fmt.Errorf("writing to %s: %w", fs.Arg(0), err)
	}
	stdin.Close()
	_, _ = io.Copy(io.Discard, stdout)
	err = cmd.Wait()
	if ctx.Err() != nil {
		return fmt.Errorf("%s killed after %v (%d results read)", fs.Arg(0), *limit, results)
	}
	if cmd.ProcessState == nil {
		return err
	}
	_, rss := usage2(cmd.ProcessState)
	fmt.Printf("%.4f %d %d %d\n", elapsed.Seconds(), results, ok, rss)
	return nil
}

// relay copies lines, stamping the first few.
func relay(args []string) error {
	fs := flag.NewFlagSet("relay", flag.ExitOnError)
	logPath := fs.String("log", "", "file for the stamps")
	n := fs.Int("n", 3, "lines to stamp")
	_ = fs.Parse(args)
	lf, err := os.Create(*logPath)
	if err != nil {
		return err
	}
	defer lf.Close()
	r := bufio.NewReaderSize(os.Stdin, 64<<10)
	for i := 0; ; i++ {
		line, err := r.ReadSlice('\n')
		if len(line) > 0 {
			t := time.Now()
			if _, werr := os.Stdout.Write(line); werr != nil {
				return werr
			}
			if i < *n {
				show := bytes.TrimRight(line, "\n")
				if len(show) > 120 {
					show = show[:120]
				}
				fmt.Fprintf(lf, "%d %s\n", t.UnixNano(), show)
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return err
		}
	}
}
