// Package tests runs the real programs together: pipelines on files and
// sockets (testscript scripts under testdata/script), and the network lab
// against real scanners in network namespaces.
package tests

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// binDir holds the programs built once for every test of the package.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ps-tests-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	cmd := exec.Command("go", "build", "-o", dir+"/", "../ps-judge", "../ps-block", "../ps-listen", "../ps-sniff", "./hitgen", "./synflood")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building the programs: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// bin is the path of a built program.
func bin(name string) string { return filepath.Join(binDir, name) }

func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(env *testscript.Env) error {
			env.Setenv("PATH", binDir+string(os.PathListSeparator)+os.Getenv("PATH"))
			// Configuration files take absolute paths: write the script's
			// work directory into them.
			confs, _ := filepath.Glob(filepath.Join(env.WorkDir, "*.conf"))
			for _, c := range confs {
				b, err := os.ReadFile(c)
				if err != nil {
					return err
				}
				if err := os.WriteFile(c, bytes.ReplaceAll(b, []byte("$WORK"), []byte(env.WorkDir)), 0o644); err != nil {
					return err
				}
			}
			return nil
		},
	})
}
