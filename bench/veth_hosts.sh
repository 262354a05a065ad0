# Two test hosts for the live benchmarks: network namespaces A and B joined
# by a veth pair (DEV_A in A with NET.1, DEV_B in B with NET.2, /24), IPv6
# off so that no neighbour discovery lands in a measured run, loopback up.
# Exits the script when they cannot be made or cannot reach each other.
# Usage: . veth_hosts.sh; veth_hosts A B DEV_A DEV_B NET   (NET: "10.89.0")
veth_hosts() {
  local ns
  if ! ip netns add "$1" || ! ip netns add "$2"; then echo "cannot create namespaces" >&2; exit 1; fi
  ip link add "$3" netns "$1" type veth peer name "$4" netns "$2" || exit 1
  ip -n "$1" addr add "$5.1/24" dev "$3"
  ip -n "$2" addr add "$5.2/24" dev "$4"
  for ns in "$1" "$2"; do
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
    ip -n "$ns" link set lo up
  done
  ip -n "$1" link set "$3" up
  ip -n "$2" link set "$4" up
  ip netns exec "$1" ping -c 1 -W 2 "$5.2" >/dev/null || { echo "no connectivity" >&2; exit 1; }
}
