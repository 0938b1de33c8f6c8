# shellcheck shell=bash disable=SC2034 # the variables set here are read by the hooks that source this file
# The netns example's shared part: settings, the session's names and subnet, and how a node maps
# to its link. Sourced by the four hooks of this folder, after ../shared/common.sh.
#
# Settings (from cinode's environment, or set per hook with `env VAR=value` in the hook's argv):
#   CINODE_NETNS_PREFIX         names of the namespaces this example makes and expects (default cinode):
#                               sessions are <prefix>-s-<tag>, nodes <prefix>-n-<name>
#   CINODE_NETNS_RANGE          the range session subnets are cut from (default 10.200.0.0/16)
#   CINODE_NETNS_SUBNET_LENGTH  the prefix length of one session's subnet (default 24)
#   CINODE_NETNS_PROVISIONING   the namespace a node's link sits in outside sessions
#                               (default <prefix>-prov; it must exist)
#   CINODE_NETNS_NODE_MAP       optional file mapping nodes to links, one node a line:
#                                 HOSTNAME  NODE-NAMESPACE  NODE-INTERFACE  LINK
#                               ('#' starts a comment). Nodes it does not list follow the convention:
#                                 NODE-NAMESPACE <prefix>-n-<first label of the hostname>,
#                                 NODE-INTERFACE eth0, LINK n-<first label of the hostname>
#   CINODE_ISOLATION_STATE      the folder of the subnet and address allocations (default
#                               /var/lib/cinode-isolation)
#
# A node is a network namespace (on a real host: a machine) whose interface NODE-INTERFACE is one
# end of a veth pair; LINK, the other end, is the node's port. Outside sessions LINK sits in the
# provisioning namespace. Attach moves LINK into the session's namespace, which routes between
# its links (IPv4 forwarding on); each node gets a /32 of the session's subnet with the gateway
# (the subnet's first address) as its point-to-point peer, and a route to the subnet through it.

netns_prefix=${CINODE_NETNS_PREFIX:-cinode}
netns_provisioning=${CINODE_NETNS_PROVISIONING:-$netns_prefix-prov}
netns_session="$netns_prefix-s-$(session_tag)"

# check_session_data: the namespace CINODE_SESSION_DATA names, if any, must be the one derived
# from the ssid (they differ when CINODE_NETNS_PREFIX changed under running sessions).
check_session_data() {
  local recorded
  recorded=$(session_field netns)
  if [ -n "$recorded" ] && [ "$recorded" != "$netns_session" ]; then
    die "CINODE_SESSION_DATA names the namespace $recorded, but session $CINODE_SSID's is $netns_session (was CINODE_NETNS_PREFIX changed?)"
  fi
}

netns_exists() {
  [ -e "/run/netns/$1" ]
}

# link_in NAMESPACE LINK: whether LINK is in NAMESPACE.
link_in() {
  netns_exists "$1" && ip -n "$1" link show dev "$2" >/dev/null 2>&1
}

# The range split into subnets: sets range_network (int), range_length, subnet_length, subnet_count.
read_range() {
  local range=${CINODE_NETNS_RANGE:-10.200.0.0/16}
  read -r range_network range_length < <(cidr_split "$range" CINODE_NETNS_RANGE) || exit 1
  [ -n "$range_network" ] || exit 1
  subnet_length=${CINODE_NETNS_SUBNET_LENGTH:-24}
  int_in_range "$subnet_length" "$range_length" 30 CINODE_NETNS_SUBNET_LENGTH
  subnet_count=$((1 << (subnet_length - range_length)))
}

# session_subnet: sets subnet_network (int), subnet, gateway for this session's subnet slot, or
# returns 1 when the session holds none.
session_subnet() {
  read_range
  local slot
  slot=$(slot_of subnets "$CINODE_SSID")
  [ -n "$slot" ] || return 1
  subnet_network=$((range_network + (slot << (32 - subnet_length))))
  subnet="$(int_to_ipv4 "$subnet_network")/$subnet_length"
  gateway=$(int_to_ipv4 $((subnet_network + 1)))
}

# resolve_node: sets node_netns, node_if, node_link for CINODE_HOSTNAME.
resolve_node() {
  local short=${CINODE_HOSTNAME%%.*}
  node_netns="$netns_prefix-n-$short"
  node_if=eth0
  node_link="n-$short"
  local map=${CINODE_NETNS_NODE_MAP:-}
  if [ -n "$map" ]; then
    [ -r "$map" ] || die "CINODE_NETNS_NODE_MAP is $map, which cannot be read"
    local host ns ifname link rest
    while read -r host ns ifname link rest; do
      case $host in '' | '#'*) continue ;; esac
      if [ "$host" = "$CINODE_HOSTNAME" ]; then
        if [ -z "$link" ] || [ -n "$rest" ]; then
          die "$map: the line of $host must have 4 fields: HOSTNAME NODE-NAMESPACE NODE-INTERFACE LINK"
        fi
        node_netns=$ns node_if=$ifname node_link=$link
        break
      fi
    done <"$map"
  fi
  if [ ${#node_link} -gt 15 ]; then
    die "the link name $node_link of $CINODE_HOSTNAME is longer than 15 characters: list the node in CINODE_NETNS_NODE_MAP"
  fi
  netns_exists "$node_netns" || die "the namespace $node_netns of node $CINODE_HOSTNAME does not exist (see CINODE_NETNS_NODE_MAP in examples/isolation/netns/netns.sh)"
}

# node_addresses_within NETWORK LENGTH: the node interface's IPv4 addresses (with their length)
# inside NETWORK/LENGTH (NETWORK as an int).
node_addresses_within() {
  local within=$1 length=$2 address mask
  mask=$(((0xffffffff << (32 - length)) & 0xffffffff))
  ip -n "$node_netns" -4 -o addr show dev "$node_if" | while read -r _ _ _ address _; do
    if [ $(($(ipv4_to_int "${address%/*}") & mask)) -eq "$within" ]; then
      printf '%s\n' "$address"
    fi
  done
}

# forget_subnet ADDRESS/32: removes a session address from the node, with the routes an attach
# set beside it (to that subnet's gateway, and to the subnet through it). Routes already gone are fine.
forget_subnet() {
  local address=${1%/*} mask network old_subnet old_gateway
  mask=$(((0xffffffff << (32 - subnet_length)) & 0xffffffff))
  network=$(($(ipv4_to_int "$address") & mask))
  old_subnet="$(int_to_ipv4 "$network")/$subnet_length"
  old_gateway=$(int_to_ipv4 $((network + 1)))
  ip -n "$node_netns" addr del "$1" dev "$node_if"
  if [ -n "$(ip -n "$node_netns" route show "$old_subnet" dev "$node_if")" ]; then
    ip -n "$node_netns" route del "$old_subnet" dev "$node_if"
  fi
  if [ -n "$(ip -n "$node_netns" route show "$old_gateway/32" dev "$node_if")" ]; then
    ip -n "$node_netns" route del "$old_gateway/32" dev "$node_if"
  fi
}
