# Sourced by tests/demo.sh and tests/bench.sh: the link of their
# two-namespace lab. The caller makes namespaces $NS_S (scanner) and $NS_P
# (protected) and sets the veth names $VS, $VP and the addresses $S4, $P4
# (a /24 of 198.18.0.0/15) and $S6, $P6 (a /64 of 2001:db8::/32).

in_s() { ip netns exec "$NS_S" "$@"; }
in_p() { ip netns exec "$NS_P" "$@"; }

# lab_link joins the two namespaces. Neighbour entries are fixed: no ARP or
# neighbour discovery for a scanner to lose its first probes to, and none
# that a block could starve.
lab_link() {
  local mac_s=02:00:c6:12:00:01 mac_p=02:00:c6:12:00:02
  ip link add "$VS" netns "$NS_S" address "$mac_s" type veth peer name "$VP" netns "$NS_P" address "$mac_p"
  in_s ip link set lo up
  in_p ip link set lo up
  in_s ip addr add "$S4/24" dev "$VS"
  in_p ip addr add "$P4/24" dev "$VP"
  in_s ip addr add "$S6/64" dev "$VS" nodad
  in_p ip addr add "$P6/64" dev "$VP" nodad
  in_s ip link set "$VS" up
  in_p ip link set "$VP" up
  in_s ip neigh replace "$P4" lladdr "$mac_p" dev "$VS" nud permanent
  in_s ip neigh replace "$P6" lladdr "$mac_p" dev "$VS" nud permanent
  in_p ip neigh replace "$S4" lladdr "$mac_s" dev "$VP" nud permanent
  in_p ip neigh replace "$S6" lladdr "$mac_s" dev "$VP" nud permanent
}

# lab_stop NS...: ends the processes the caller started (its array pids)
# and anything still inside the given namespaces, which only the caller put
# there: TERM, up to a second's grace, then KILL.
lab_stop() {
  local ns p
  for ns in "$@"; do
    [ -e "/run/netns/$ns" ] && pids+=($(ip netns pids "$ns" 2>/dev/null))
  done
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
}
