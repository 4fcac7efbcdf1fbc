#!/usr/bin/env bash
# make demo: a two-namespace lab (a scanner and a protected host joined by a
# veth pair, addresses from 198.18.0.0/15 and 2001:db8::/32 only), real
# daemons on the protected host, and nmap SYN scans of it from the scanner:
# first without the pipeline, then with
#
#     ps-sniff -atcp | ps-judge | ps-block        (nftables action)
#
# running on the protected host. Prints what the scanner saw side by side,
# the decision and result lines, and the nftables set, and ends with what
# the scanner learnt with and without the pipeline; then tears the lab
# down. No packet leaves the namespaces it creates. Needs root.
set -euo pipefail
. "$(dirname "$0")/lab.sh"

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
BIN=${BIN:-$root/bin}

say() { printf '\n== %s\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

if [ "$(id -u)" -ne 0 ]; then
  die "must run as root: it creates network namespaces, a veth pair and an nftables table (try: sudo make demo)"
fi
for p in ps-sniff ps-judge ps-block; do
  [ -x "$BIN/$p" ] || die "$BIN/$p is missing: run make build (make demo does)"
done

# --- tools ------------------------------------------------------------------
daemon_tool() {
  local t
  for t in python3 socat ncat; do
    if command -v "$t" >/dev/null 2>&1; then echo "$t"; return; fi
  done
}
missing=()
for t in nmap nft ip ss timeout; do command -v "$t" >/dev/null 2>&1 || missing+=("$t"); done
[ -n "$(daemon_tool)" ] || missing+=("python3|socat|ncat")
if [ ${#missing[@]} -gt 0 ]; then
  say "missing ${missing[*]}: running tests/install-deps.sh"
  "$here/install-deps.sh"
  for t in nmap nft ip ss timeout; do command -v "$t" >/dev/null 2>&1 || die "$t is still missing after tests/install-deps.sh"; done
  [ -n "$(daemon_tool)" ] || die "no python3, socat or ncat to run the demo's daemons (add python3 to tests/install-deps.sh)"
fi
DAEMON=$(daemon_tool)

# --- the lab ----------------------------------------------------------------
id=$$
NS_S=psdemo-$id-scanner
NS_P=psdemo-$id-protected
VS=psd${id}s   # veth ends: at most 15 characters
VP=psd${id}p
S4=198.18.0.1 P4=198.18.0.2
S6=2001:db8:5e::1 P6=2001:db8:5e::2
TABLE=psdemo_$id
work=$(mktemp -d /tmp/psdemo.XXXXXX)
chmod 755 "$work"   # the sensor runs as nobody after it drops root
pids=()

# The demo's own output, for cleanup: a signal's trap runs inside whatever
# redirection the interrupted command had (nmap's output file).
exec 8>&1 9>&2
cleanup() {
  local rc=$? p f ns
  trap - EXIT INT TERM
  exec 1>&8 2>&9
  if [ "$rc" -ne 0 ]; then
    for f in sniff judge block; do
      [ -s "$work/$f.log" ] || continue
      echo "-- ps-$f's log (last lines):" >&2
      tail -n 5 "$work/$f.log" | sed 's/^/   /' >&2
    done
  fi
  # What the demo started, by pid; then anything still inside its two
  # namespaces (ip netns pids), which only the demo put there.
  lab_stop "$NS_S" "$NS_P"
  ip netns del "$NS_S" 2>/dev/null || true
  ip netns del "$NS_P" 2>/dev/null || true   # the nft table goes with it
  [ -n "${KEEP:-}" ] || rm -rf "$work"
  [ "$rc" -eq 0 ] || echo "demo: failed (status $rc); lab torn down" >&2
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM


say "lab: namespaces $NS_S ($S4, $S6) and $NS_P ($P4, $P6), veth $VS <-> $VP"
ip netns add "$NS_S"
ip netns add "$NS_P"
lab_link

# start_bg LOG CMD...: runs CMD in the protected namespace in the
# background, remembered by pid for cleanup (ip netns exec execs CMD, so $!
# is CMD itself).
start_bg() {
  local log=$1; shift
  ip netns exec "$NS_P" "$@" >"$log" 2>&1 &
  pids+=($!)
}
# wait_for SECONDS DESCRIPTION CMD...: polls CMD until it succeeds.
wait_for() {
  local n=$(($1 * 10)) what=$2; shift 2
  while ! "$@" >/dev/null 2>&1; do
    n=$((n - 1))
    [ "$n" -gt 0 ] || die "timed out waiting for $what"
    sleep 0.1
  done
}
listening() { in_p ss -Hltn "sport = :$1" | grep -q LISTEN; }

say "daemons on the protected host: a web server on port 80 and an SSH-like banner on port 22 (with $DAEMON)"
case $DAEMON in
  python3)
    start_bg "$work/http.log" python3 -m http.server --bind :: --directory "$work" 80
    start_bg "$work/ssh.log" python3 -c '
import socket
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", 22)); s.listen(16)
while True:
    c, _ = s.accept()
    try: c.sendall(b"SSH-2.0-OpenSSH_9.2p1 demo\r\n")
    except OSError: pass
    c.close()'
    ;;
  socat)
    start_bg "$work/http.log" socat TCP6-LISTEN:80,fork,reuseaddr,ipv6only=0 SYSTEM:'printf "HTTP/1.0 200 OK\r\n\r\nhello\r\n"'
    start_bg "$work/ssh.log" socat TCP6-LISTEN:22,fork,reuseaddr,ipv6only=0 SYSTEM:'printf "SSH-2.0-OpenSSH_9.2p1 demo\r\n"'
    ;;
  ncat)
    start_bg "$work/http.log" ncat -lk 80 --sh-exec 'printf "HTTP/1.0 200 OK\r\n\r\nhello\r\n"'
    start_bg "$work/ssh.log" ncat -lk 22 --sh-exec 'printf "SSH-2.0-OpenSSH_9.2p1 demo\r\n"'
    ;;
esac
wait_for 10 "the daemons on ports 22 and 80" bash -c "$(declare -f in_p listening); NS_P=$NS_P; listening 22 && listening 80"

# scan FAMILY(4|6) TARGET NAME: a SYN scan of ports 1-1024; writes the
# grepable output to $work/NAME.gnmap and prints how long it took.
scan() {
  local fam=$1 target=$2 name=$3 t0 ms six=()
  [ "$fam" = 6 ] && six=(-6)
  t0=$(date +%s%N)
  in_s timeout 30 nmap "${six[@]}" -n -Pn -sS --send-ip -p 1-1024 --max-retries 0 --max-rtt-timeout 100ms \
    --host-timeout 20s -oG "$work/$name.gnmap" "$target" >"$work/$name.nmap" 2>&1 || true
  ms=$((($(date +%s%N) - t0) / 1000000))
  # What the protected host answered during this scan (and zero again).
  in_p nft reset counters table inet "$ANSWERS" | awk -v fam="$fam" '
    /counter/ { name = $2 }
    /packets/ && name ~ fam "$" { sub(/[46]$/, "", name); printf "%s %s\n", name, $2 }' >"$work/$name.answers"
  printf '   nmap -%s -n -Pn -sS --send-ip -p 1-1024 %s: done in %d.%02d s\n' "$fam" "$target" $((ms / 1000)) $((ms % 1000 / 10))
}

# The protected host's answers to the scanner, counted by the kernel on
# their way out (SYN-ACK from an open port, RST from a closed one): what
# the scanner learnt, whatever nmap makes of it.
# A SYN-ACK is sent once: its retransmissions (the scanner's RST dropped by
# the block) would count as answers to probes never sent again.
ANSWERS=${TABLE}_answers
in_p sysctl -qw net.ipv4.tcp_synack_retries=0
in_p nft -f - <<EOF
table inet $ANSWERS {
  counter synack4 { }
  counter rst4 { }
  counter synack6 { }
  counter rst6 { }
  chain output {
    type filter hook output priority 0; policy accept;
    ip daddr $S4 tcp flags & (syn | ack) == syn | ack counter name synack4
    ip daddr $S4 tcp flags & rst == rst counter name rst4
    ip6 daddr $S6 tcp flags & (syn | ack) == syn | ack counter name synack6
    ip6 daddr $S6 tcp flags & rst == rst counter name rst6
  }
}
EOF

say "scan 1: nmap from the scanner, no pipeline running"
scan 4 "$P4" before4
scan 6 "$P6" before6

# --- the pipeline -------------------------------------------------------------
# The built-in defaults (contrib/portsentry.conf lists them), but for where
# the files go (a temporary directory, not /etc/portsentry or
# /var/lib/portsentry) and the name of the nftables table.
cat >"$work/portsentry.conf" <<EOF
IGNORE_FILE="$work/portsentry.ignore"
BLOCKED_FILE="$work/portsentry.blocked"
HISTORY_FILE="$work/portsentry.history"
NFT_TABLE="$TABLE"
EOF
# FAST_PATH=0 make demo: the pipeline alone, without the kernel fast path.
[ -z "${FAST_PATH:-}" ] || echo "FAST_PATH=\"$FAST_PATH\"" >>"$work/portsentry.conf"
: >"$work/portsentry.ignore"
chmod 644 "$work/portsentry.conf" "$work/portsentry.ignore"
mkfifo "$work/hits" "$work/judged" "$work/decisions"

say "starting on the protected host: ps-sniff -atcp | ps-judge | ps-block (nftables table inet $TABLE)"
# Each stage is its own process (ip netns exec execs it), joined by named
# pipes, so each can be stopped by its pid; tee copies the decisions to a
# file on their way to ps-block.
ip netns exec "$NS_P" "$BIN/ps-block" -c "$work/portsentry.conf" <"$work/decisions" >"$work/results.jsonl" 2>"$work/block.log" &
pipeline=($!)
tee "$work/decisions.jsonl" <"$work/judged" >"$work/decisions" &
pipeline+=($!)
ip netns exec "$NS_P" "$BIN/ps-judge" -c "$work/portsentry.conf" <"$work/hits" >"$work/judged" 2>"$work/judge.log" &
pipeline+=($!)
ip netns exec "$NS_P" "$BIN/ps-sniff" -atcp -c "$work/portsentry.conf" >"$work/hits" 2>"$work/sniff.log" &
sniff=$!
pipeline+=("$sniff")
pids+=("${pipeline[@]}")
wait_for 10 "ps-sniff to start (see its log)" grep -q "now active and listening" "$work/sniff.log"
wait_for 10 "ps-block to start" grep -q "ps-block is active" "$work/block.log"
grep -E "now running as|Ignored TCP port|monitor first" "$work/sniff.log" | sed 's/^/   ps-sniff: /'

say "scan 2: the same nmap scans, pipeline running (the scanner's first contact)"
scan 4 "$P4" first4
scan 6 "$P6" first6
wait_for 5 "ps-block's results" grep -q '"kind":"result"' "$work/results.jsonl"
sleep 0.2
say "scan 3: the scanner comes back for a second look (no probe is answered now: nmap waits out its timeouts, about 10 s a scan)"
scan 4 "$P4" again4
scan 6 "$P6" again6

say "the scanner tries the web server afterwards (bash /dev/tcp, 2 s)"
for t in "$P4" "$P6"; do
  if in_s timeout 2 bash -c "exec 3<>/dev/tcp/$t/80" 2>/dev/null; then
    echo "   $t port 80: connected (not blocked)"
  else
    echo "   $t port 80: no answer (blocked)"
  fi
done

echo
sh "$here/demo-report.sh" "$work" table
cat <<'EOF'

   With the kernel fast path (FAST_PATH, on by default) nftables blocks the
   scanner from its first probe, before any process runs. Without it
   (FAST_PATH=0 make demo) the scanner races the pipeline: nmap sends all
   1024 probes within milliseconds over a veth link, and what it sent before
   the block was in place (probe -> sensor -> judge -> nftables) is answered.
   Either way, from then on it sees nothing, not even the daemons on 22 and 80.
EOF

say "ps-judge's decisions"
sed 's/^/   /' "$work/decisions.jsonl"
say "ps-block's results"
sed 's/^/   /' "$work/results.jsonl"
say "the nftables sets on the protected host (nft list table inet $TABLE)"
in_p nft list table inet "$TABLE" | sed 's/^/   /'
say "HISTORY_FILE (1.2's format, read by fail2ban's portsentry filter)"
sed 's/^/   /' "$work/portsentry.history" 2>/dev/null || echo "   (none)"
say "ps-sniff's log (last lines)"
tail -n 4 "$work/sniff.log" | sed 's/^/   /'

say "stopping the pipeline: SIGTERM to ps-sniff, the others end at end of input"
kill -TERM "$sniff"
for _ in $(seq 50); do
  alive=0
  for p in "${pipeline[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
  [ "$alive" = 0 ] && break
  sleep 0.1
done
if [ "$alive" = 0 ]; then
  echo "   all three stages have exited"
else
  echo "   a stage is still running; it is killed with the lab"
fi
echo
sh "$here/demo-report.sh" "$work" learnt
say "tearing the lab down"
