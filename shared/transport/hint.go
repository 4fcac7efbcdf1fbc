package transport

import (
	"fmt"
	"os"
	"path/filepath"
)

// DirHint says, for a socket path whose directory does not exist, what
// creates it: /run/portsentry is made by systemd's ps-block.service
// (RuntimeDirectory), and is not there when the stages run by hand. It is
// "" when the directory exists.
func DirHint(path string) string {
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		return ""
	}
	return fmt.Sprintf(" (the directory %s does not exist: under systemd ps-block.service creates /run/portsentry; "+
		"outside systemd create it first, e.g. install -d -m 0755 %s)", dir, dir)
}
