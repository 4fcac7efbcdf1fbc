package stage

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"
)

// printMan writes the program's manual page (section 8) to standard output:
// urfave/cli's rendering of the visible flags, and the sections it cannot
// know, the same for the four programs.
func printMan(app *cli.App) error {
	var visible []cli.Flag
	for _, f := range app.Flags {
		if vf, ok := f.(cli.VisibleFlag); ok && !vf.IsVisible() {
			continue
		}
		visible = append(visible, f)
	}
	app.Flags = visible
	page, err := app.ToManWithSection(8)
	if err != nil {
		return Fatal("manual page: %v", err)
	}
	_, err = fmt.Fprint(os.Stdout, page, manTail)
	return err
}

// manTail ends every program's page.
const manTail = `.SH FILES
.TP
.I /etc/portsentry/portsentry.conf
the configuration (see
.BR portsentry.conf (5)).
.TP
.I /run/portsentry/
the sockets joining the stages under the systemd units:
.IR judge.sock ,
.IR block.sock ,
.IR admin.sock .
.TP
.I /var/lib/portsentry/
ps-block's state: the blocked files and the history.
.SH EXIT STATUS
0 on success, 1 on an error (said on standard error with the program's name), 2 on a usage error;
a command above may say more of its own.
.SH SEE ALSO
.BR portsentry.conf (5),
.BR ps-listen (8),
.BR ps-sniff (8),
.BR ps-judge (8),
.BR ps-block (8),
.BR nft (8),
.BR systemd.service (5)
.PP
The README in
.I /usr/share/doc/portsentry/
(or the source tree) leads through installing, configuring, running and removing the pipeline.
`
