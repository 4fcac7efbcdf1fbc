package tests

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portsentry/pipeline/shared/netlab"
)

func unblockLine(target, mode string) string {
	return fmt.Sprintf(`{"v":1,"kind":"unblock","time":"2026-11-24T10:00:00Z","target":%q,"mode":%q}`+"\n", target, mode)
}

// TestAdminLines (issue 11 item 7): ps-judge passes on an unblock only
// from its --admin socket, never from a writer of the sensors' socket (a
// sensor that parses hostile packets could otherwise lift any block), nor
// from standard input (a sensor's pipe or a capture of its output). Each
// refusal is reported; a peer that is neither root nor ps-judge's user is
// refused on the admin socket even if its mode lets it in.
func TestAdminLines(t *testing.T) {
	dir := t.TempDir()
	conf := writeFile(t, dir, "p.conf", "SCAN_TRIGGER=\"0\"\nIGNORE_FILE=\""+dir+"/none\"\n")

	t.Run("stdin", func(t *testing.T) {
		cmd := exec.Command(bin("ps-judge"), "-c", conf)
		cmd.Stdin = strings.NewReader(unblockLine("198.18.0.1", "atcp"))
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%v\n%s", err, stderr.String())
		}
		if len(out) != 0 {
			t.Errorf("an unblock from standard input was passed on: %q", out)
		}
		if !strings.Contains(stderr.String(), "stdin line 1: unblock of 198.18.0.1 in mode atcp refused: administrative lines are taken only from the --admin socket") {
			t.Errorf("refusal not reported:\n%s", stderr.String())
		}
	})

	t.Run("sockets", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("needs root to connect as another user")
		}
		for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		sensorSock, adminSock := filepath.Join(dir, "judge.sock"), filepath.Join(dir, "admin.sock")
		cmd := exec.Command(bin("ps-judge"), "-c", conf, "--listen", sensorSock, "--admin", adminSock)
		stdout, w := advPipe(t)
		cmd.Stdout = w
		j := advStart(t, dir, "ps-judge", cmd)
		w.Close()
		j.waitLog(t, "taking administrative lines (unblock) from "+adminSock, 10*time.Second)
		j.waitLog(t, "reading event lines from "+sensorSock, 10*time.Second)
		if fi, err := os.Stat(adminSock); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("admin socket mode %v, %v", fi.Mode(), err)
		}

		// A sensor blocks 198.18.0.1, then tries to lift it.
		sensor, err := net.Dial("unix", sensorSock)
		if err != nil {
			t.Fatal(err)
		}
		defer sensor.Close()
		fmt.Fprint(sensor, hitLine("198.18.0.1", 21, time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)))
		fmt.Fprint(sensor, unblockLine("198.18.0.1", "atcp"))
		j.waitLog(t, "unblock of 198.18.0.1 in mode atcp refused: administrative lines are taken only from the --admin socket", 10*time.Second)

		// Another user, even with the admin socket opened to it, is refused by its credentials.
		if err := os.Chmod(adminSock, 0o666); err != nil {
			t.Fatal(err)
		}
		if cs, err := netlab.DialUnixAs(adminSock, 65534, 1); err != nil {
			t.Fatal(err)
		} else {
			fmt.Fprint(cs[0], unblockLine("198.18.0.1", "atcp"))
			cs[0].Close()
		}
		j.waitLog(t, "uid 65534 is neither root nor ps-judge's user", 10*time.Second)

		// The administrator lifts it.
		admin, err := net.Dial("unix", adminSock)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprint(admin, unblockLine("198.18.0.1", "atcp"))
		admin.Close()
		j.waitLog(t, "unblock of 198.18.0.1 in mode atcp from "+adminSock, 10*time.Second)
		j.stop(t, 10*time.Second)

		var kinds []string
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if i := strings.Index(sc.Text(), `"kind":"`); i >= 0 {
				kinds = append(kinds, strings.SplitN(sc.Text()[i+8:], `"`, 2)[0])
			}
		}
		if strings.Join(kinds, " ") != "block unblock" {
			t.Errorf("ps-judge wrote %q, want the block and the administrator's one unblock", kinds)
		}
	})
}
