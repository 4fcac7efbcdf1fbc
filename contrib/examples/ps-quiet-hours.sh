#!/usr/bin/env bash
# ps-quiet-hours.sh -- an example of a custom stage written as a shell script.
#
# It sits between ps-judge and ps-block and reads and writes the same event
# lines they do:
#
#     ps-sniff -atcp | ps-judge | ps-quiet-hours.sh -q 22:00-06:00 -l /var/log/portsentry-decisions.log | ps-block
#
# - every decision is passed on, re-encoded as compact JSON;
# - with -q HH:MM-HH:MM, `block` and `run` decisions whose own time falls in
#   that window (UTC, read from the event's "time", so a replay gives the
#   same output) are turned into `alert` (log only), with a field
#   "downgraded":"quiet-hours"; the window may span midnight;
# - with -l FILE, one human-readable line per decision is appended to FILE;
# - with -m ADDRESS, every decision that still blocks is mailed with mail(1).
#
# Hostile input: every line is parsed by jq, never by the shell, and checked
# field by field as the SPEC asks (v, kind, time, target, mode, port, hits);
# a line that is not valid is reported on stderr with its number and a fixed
# reason, counted, and dropped: it never reaches ps-block. Only values that
# passed the checks (an address made of [0-9a-fA-F:.], a mode from a fixed
# list, numbers) ever reach the log line, the mail or the shell. Nothing is
# eval'ed and no value is used as an option.
#
# Needs bash and jq (Debian: apt-get install jq).
set -euo pipefail

prog=ps-quiet-hours
quiet="" logfile="" mailto=""
usage() {
  echo "usage: $prog [-q HH:MM-HH:MM] [-l FILE] [-m ADDRESS] < decisions > decisions" >&2
  exit 2
}
while getopts "q:l:m:h" opt; do
  case $opt in
    q) quiet=$OPTARG ;;
    l) logfile=$OPTARG ;;
    m) mailto=$OPTARG ;;
    *) usage ;;
  esac
done
shift $((OPTIND - 1))
[ $# -eq 0 ] || usage
command -v jq >/dev/null 2>&1 || { echo "$prog: jq is required (apt-get install jq)" >&2; exit 1; }

# The window as minutes of the day; -1 -1: no window.
qfrom=-1 qto=-1
if [ -n "$quiet" ]; then
  if [[ ! $quiet =~ ^([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-3]):([0-5][0-9])$ ]]; then
    echo "$prog: -q wants HH:MM-HH:MM (UTC), got a malformed value" >&2
    exit 2
  fi
  qfrom=$((10#${BASH_REMATCH[1]} * 60 + 10#${BASH_REMATCH[2]}))
  qto=$((10#${BASH_REMATCH[3]} * 60 + 10#${BASH_REMATCH[4]}))
fi
if [ -n "$mailto" ]; then
  [[ $mailto =~ ^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+$ ]] || { echo "$prog: -m: not a plain mail address" >&2; exit 2; }
  command -v mail >/dev/null 2>&1 || { echo "$prog: -m needs mail(1) (bsd-mailx or mailutils)" >&2; exit 1; }
fi

# jq reads raw lines and writes one tab-separated record per line:
#   P <tab> JSON                                  pass JSON on
#   E <tab> N <tab> REASON                        line N refused
#   N <tab> KIND <tab> TARGET <tab> MODE <tab> PORT <tab> HITS <tab> TIME <tab> NOTE
# Every field but JSON has passed a strict check; JSON is jq's own encoding,
# which holds no raw tab or newline.
filter='
def bad($why): "E\t\(input_line_number)\t\($why)";
def isaddr: type == "string" and length <= 45 and
  (test("^[0-9]{1,3}(\\.[0-9]{1,3}){3}$") or test("^[0-9A-Fa-f:.]{2,45}$") and test(":"));
def istime: type == "string" and test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?Z$");
def isint($lo; $hi): type == "number" and . == floor and . >= $lo and . <= $hi;
def minutes: .[11:13] as $h | .[14:16] as $m | ($h | tonumber) * 60 + ($m | tonumber);
def inwindow($t): ($t | minutes) as $x |
  if $qfrom < 0 then false
  elif $qfrom <= $qto then $x >= $qfrom and $x < $qto
  else $x >= $qfrom or $x < $qto end;
. as $raw
| if ($raw | utf8bytelength) > 4095 then bad("line too long (more than 4096 bytes)")
  elif ($raw | explode | any(. == 0)) then bad("line holds a NUL byte")
  elif ($raw | test("\ufffd")) then bad("line is not valid UTF-8")
  else
    ($raw | try fromjson catch null) as $e
    | if ($e | type) != "object" then bad("not a JSON object")
      elif $e.v != 1 then bad("unknown or missing \"v\"")
      elif ([$e.kind] | inside(["alert", "block", "run", "unblock"]) | not) then bad("not a decision (kind alert, block, run or unblock)")
      elif ($e.time | istime | not) then bad("missing or invalid \"time\"")
      elif ($e.target | isaddr | not) then bad("missing or invalid \"target\"")
      elif ([$e.mode] | inside(["tcp", "udp", "stcp", "sudp", "atcp", "audp"]) | not) then bad("missing or invalid \"mode\"")
      elif $e.port != null and ($e.port | isint(0; 65535) | not) then bad("invalid \"port\"")
      elif $e.hits != null and ($e.hits | isint(0; 4294967295) | not) then bad("invalid \"hits\"")
      elif $e.until != null and ($e.until | istime | not) then bad("invalid \"until\"")
      else
        (if ($e.kind == "block" or $e.kind == "run") and inwindow($e.time)
         then $e + {kind: "alert", downgraded: "quiet-hours"} else $e end) as $out
        | ($out | tojson) as $json
        | if ($json | utf8bytelength) > 4095 then bad("line too long once re-encoded")
          else
            "N\t\($out.kind)\t\($out.target)\t\($out.mode)\t\($out.port // 0)\t\($out.hits // 0)\t\($out.time)\t\(if $out.downgraded then "downgraded: quiet hours" else "-" end)",
            "P\t\($json)"
          end
      end
  end'

bad=0
while IFS=$'\t' read -r tag a b c d e f g; do
  case $tag in
    P)
      printf '%s\n' "$a"
      ;;
    E)
      bad=$((bad + 1))
      printf '%s: line %s: %s; skipped (%d bad lines so far)\n' "$prog" "$a" "$b" "$bad" >&2
      ;;
    N)
      # a=kind b=target c=mode d=port e=hits f=time g=note, all checked by jq.
      msg="$f $a $b mode $c port $d hits $e${g:+ ($g)}"
      msg=${msg% (-)}
      if [ -n "$logfile" ]; then
        printf '%s\n' "$msg" >>"$logfile" || printf '%s: cannot append to the log file\n' "$prog" >&2
      fi
      if [ -n "$mailto" ] && { [ "$a" = block ] || [ "$a" = run ]; }; then
        printf '%s\n' "$msg" | timeout 20 mail -s "portsentry: $a $b ($c)" -- "$mailto" ||
          printf '%s: mail to %s failed\n' "$prog" "$mailto" >&2
      fi
      ;;
  esac
done < <(jq -R -r --unbuffered --argjson qfrom "$qfrom" --argjson qto "$qto" "$filter")
