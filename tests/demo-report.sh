#!/bin/sh
# tests/demo-report.sh DIR [table|learnt]: what the demo's scanner saw and
# learnt, from what it saved in DIR for each scan NAME (before4/6: no
# pipeline; first4/6: the pipeline running, the scanner's first contact;
# again4/6: its second look): nmap's grepable output NAME.gnmap, and
# NAME.answers, the protected host's answers the kernel counted on their
# way out ("synack N" and "rst N" lines). Prints the table, or a few lines
# saying what the scanner learnt with and without the pipeline, or both.
# POSIX sh and awk only (Debian's default awk is mawk): tests/newuser_test.go
# runs it under mawk on saved scans.
set -eu
dir=$1 part=${2:-both}

# nmapsays NAME: "open closed filtered openlist" from NAME.gnmap. Ports
# nmap lists nowhere (it gave up on the host) had no answer it used: the
# scan covered 1-1024, so they count as filtered. openlist is "-" for
# none, and ends in "*" when nmap gave up on the host.
nmapsays() {
  awk '
    /Ports:/ {
      line = $0
      sub(/.*Ports: /, "", line); sub(/\t.*/, "", line)
      n = split(line, ports, /, /)
      for (i = 1; i <= n; i++) {
        split(ports[i], field, "/")
        st[field[2]]++
        if (field[2] == "open") openlist = openlist (openlist == "" ? "" : ",") field[1]
      }
    }
    /Ignored State:/ {
      s = $0; sub(/.*Ignored State: /, "", s)
      split(s, ign, /[ ()]+/)
      st[ign[1]] += ign[2]
    }
    /Status: Timeout/ { timeout = 1 }
    END {
      if (openlist == "") openlist = "-"
      if (timeout) openlist = openlist "*"
      filtered = st["filtered"] + st["open|filtered"]
      if (st["open"] + st["closed"] + filtered < 1024) filtered = 1024 - st["open"] - st["closed"]
      printf "%d %d %d %s\n", st["open"], st["closed"], filtered, openlist
    }' "$dir/$1.gnmap"
}

# answers NAME: "synack rst" the host sent during scan NAME.
answers() {
  awk '$1 == "synack" { s = $2 } $1 == "rst" { r = $2 } END { printf "%d %d\n", s, r }' "$dir/$1.answers"
}

# target NAME: the address nmap scanned.
target() { awk '/^Host: / { print $2; exit }' "$dir/$1.gnmap"; }

count() { if [ "$1" = 1 ]; then echo "1 $2"; else echo "$1 $2s"; fi; }
row() { printf '   %-24s | %-21s | %-21s | %-21s\n' "$@"; }

if [ "$part" != learnt ]; then
  echo "== what the scanner saw"
  row "" "without the pipeline" "with it: first scan" "with it: second scan"
  row "------------------------" "---------------------" "---------------------" "---------------------"
  for fam in 4 6; do
    set -- $(nmapsays before$fam) $(nmapsays first$fam) $(nmapsays again$fam)
    row "IPv$fam $(target before$fam)" "" "" ""
    row "  nmap: open" "$1" "$5" "$9"
    row "  nmap: closed" "$2" "$6" "${10}"
    row "  nmap: filtered" "$3" "$7" "${11}"
    row "  nmap: open ports" "$4" "$8" "${12}"
    set -- $(answers before$fam) $(answers first$fam) $(answers again$fam)
    row "  answers: SYN-ACK, RST" "$1, $2" "$3, $4" "$5, $6"
  done
  echo "   *: nmap gave up on the host (--host-timeout 20s) and listed no port. answers: what the host sent, counted by the kernel on the way out."
fi
[ "$part" = table ] && exit 0

echo "== what the scanner learnt"
for fam in 4 6; do
  echo "   IPv$fam, $(target before$fam):"
  set -- $(nmapsays before$fam)
  open=$4
  set -- $(answers before$fam) $(answers first$fam) $(answers again$fam)
  echo "   - without the pipeline: the host answered $(($1 + $2)) of 1024 probes ($(count "$1" "port") open: $open; $2 closed): a map of the host."
  if [ $(($3 + $4)) -eq 0 ]; then
    echo "   - with it, first contact: the host answered no probe."
  else
    echo "   - with it, first contact: the host answered $(count $(($3 + $4)) probe) ($3 from open ports, $4 from closed ones) before the block took hold; then nothing."
  fi
  if [ $(($5 + $6)) -eq 0 ]; then
    echo "   - with it, second look: the host answered no probe, not even on its open ports."
  else
    echo "   - with it, second look: the host still answered $(count $(($5 + $6)) probe): the block did not hold."
  fi
done
