package privdrop

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestTo drops privileges in a child process, since a dropped process cannot
// get them back.
func TestTo(t *testing.T) {
	if os.Getenv("PRIVDROP_CHILD") == "1" {
		msg, err := To("nobody")
		if err != nil {
			t.Fatal(err)
		}
		if os.Geteuid() == 0 || os.Getuid() == 0 || os.Getegid() == 0 {
			t.Fatalf("still root after %q", msg)
		}
		if _, err := os.ReadFile("/etc/shadow"); err == nil {
			t.Fatal("could read /etc/shadow after dropping")
		}
		return
	}
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI must run as root to test dropping privileges")
		}
		t.Skip("SKIPPED LOUDLY: not root, cannot test dropping privileges")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestTo$", "-test.v")
	cmd.Env = append(os.Environ(), "PRIVDROP_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "PASS") {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if _, err := To("no-such-user-here"); err == nil {
		t.Fatal("an unknown user must be an error")
	}
}
