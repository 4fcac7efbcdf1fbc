#!/usr/bin/env bash
# Installs, from Debian's packages, the real peers the tests and the demo
# use: scanners, the firewall tools, fail2ban, and the network lab's tools.
# Only what is missing is installed; run as root.
# The fleet tests' nats-server is not among them: TestFleet and bench.sh
# build it from the Go module the tests embed (github.com/nats-io/
# nats-server/v2, the version in go.mod), as Debian's package (2.9) has no
# per-message TTL.
set -euo pipefail
need=()
for pair in nmap:nmap hping3:hping3 masscan:masscan nft:nftables iptables:iptables tcpdump:tcpdump \
            iperf3:iperf3 fail2ban-regex:fail2ban ip:iproute2 ping:iputils-ping make:make git:git \
            jq:jq logrotate:logrotate tcpdmatch:tcpd systemd-analyze:systemd python3:python3 setpriv:util-linux \
            mawk:mawk logwatch:logwatch groff:groff-base man:man-db; do
  cmd=${pair%%:*} pkg=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -eq 0 ]; then
  echo "install-deps: everything is installed"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: WARNING: missing ${need[*]}; not root, so not installed: lab tests will skip" >&2
  exit 0
fi
echo "install-deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
