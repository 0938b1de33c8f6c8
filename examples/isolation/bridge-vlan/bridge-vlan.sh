# shellcheck shell=bash
# The bridge-vlan example's shared part: settings, the node-to-port map, and the one operation
# shellcheck source-path=SCRIPTDIR
# every hook is made of: put a port in exactly one VLAN (untagged, as its PVID). Sourced by the
# four hooks of this folder, after ../shared/common.sh.
#
# Settings (from cinode's environment, or set per hook with `env VAR=value` in the hook's argv):
#   CINODE_BRIDGE              the VLAN-filtering bridge the nodes' ports are in (default br0)
#   CINODE_VLAN_RANGE          the VLAN ids sessions get, FIRST-LAST (default 100-999)
#   CINODE_VLAN_PROVISIONING   the VLAN a port is in outside sessions (default 10)
#   CINODE_BRIDGE_PORTS        the file mapping nodes to bridge ports, one node a line:
#                                HOSTNAME  PORT
#                              ('#' starts a comment); required by the node hooks
#   CINODE_BRIDGE_TRUNKS       ports that carry every session's VLAN tagged (the uplink to other
#                              switches or a router), space-separated (default: none)
#   CINODE_ISOLATION_STATE     the folder of the VLAN allocations (default /var/lib/cinode-isolation)

bridge_name=${CINODE_BRIDGE:-br0}
provisioning_vid=${CINODE_VLAN_PROVISIONING:-10}
int_in_range "$provisioning_vid" 1 4094 CINODE_VLAN_PROVISIONING

# read_vlan_range: sets vid_first and vid_last.
read_vlan_range() {
  local range=${CINODE_VLAN_RANGE:-100-999}
  if ! [[ $range =~ ^([0-9]+)-([0-9]+)$ ]]; then
    die "CINODE_VLAN_RANGE is '$range': expected FIRST-LAST, like 100-999"
  fi
  vid_first=${BASH_REMATCH[1]} vid_last=${BASH_REMATCH[2]}
  int_in_range "$vid_first" 1 4094 "the first VLAN id of CINODE_VLAN_RANGE"
  int_in_range "$vid_last" "$vid_first" 4094 "the last VLAN id of CINODE_VLAN_RANGE"
  if [ "$provisioning_vid" -ge "$vid_first" ] && [ "$provisioning_vid" -le "$vid_last" ]; then
    die "CINODE_VLAN_PROVISIONING ($provisioning_vid) is inside CINODE_VLAN_RANGE ($range): sessions would share the provisioning network"
  fi
}

# session_vid: the session's VLAN id, from the allocation, checked against CINODE_SESSION_DATA;
# empty when the session holds none. The allocation is the truth: it is there also after a setup
# that failed and printed nothing, and once a teardown has freed the id, the id may already be
# another session's, so a teardown run again must not touch it.
session_vid() {
  local claimed recorded
  claimed=$(slot_of vlans "$CINODE_SSID")
  recorded=$(session_field vlan)
  if [ -n "$claimed" ] && [ -n "$recorded" ] && [ "$claimed" != "$recorded" ]; then
    die "CINODE_SESSION_DATA says VLAN $recorded, but $(state_dir)/vlans gives session $CINODE_SSID VLAN $claimed"
  fi
  printf '%s\n' "$claimed"
}

# node_port: the bridge port of CINODE_HOSTNAME, from CINODE_BRIDGE_PORTS.
node_port() {
  local map=${CINODE_BRIDGE_PORTS:-}
  [ -n "$map" ] || die "CINODE_BRIDGE_PORTS is not set: it names the file that maps nodes to bridge ports"
  [ -r "$map" ] || die "CINODE_BRIDGE_PORTS is $map, which cannot be read"
  local host port rest
  while read -r host port rest; do
    case $host in '' | '#'*) continue ;; esac
    if [ "$host" = "$CINODE_HOSTNAME" ]; then
      if [ -z "$port" ] || [ -n "$rest" ]; then
        die "$map: the line of $host must have 2 fields: HOSTNAME PORT"
      fi
      printf '%s\n' "$port"
      return 0
    fi
  done <"$map"
  die "$CINODE_HOSTNAME has no line in $map (CINODE_BRIDGE_PORTS), so its bridge port is unknown"
}

# port_vids PORT: the VLAN ids PORT is in now, one a line (from `bridge -j vlan show`).
port_vids() {
  local json
  json=$(bridge -j vlan show dev "$1") || die "could not read the VLANs of port $1 (is it a port of $bridge_name?)"
  grep -o '"vlan":[0-9]*' <<<"$json" | cut -d: -f2 || true
}

# ports_in_vid VID: the ports (not trunks, not the bridge) in VLAN VID now, one a line.
ports_in_vid() {
  local vid=$1 json token port=""
  json=$(bridge -j vlan show) || die "could not read the VLANs of $bridge_name"
  grep -o '"ifname":"[^"]*"\|"vlan":[0-9]*' <<<"$json" | while read -r token; do
    case $token in
      '"ifname":'*) port=${token#\"ifname\":\"} port=${port%\"} ;;
      *)
        if [ "${token#\"vlan\":}" = "$vid" ] && [ "$port" != "$bridge_name" ] && ! is_trunk "$port"; then
          printf '%s\n' "$port"
        fi
        ;;
    esac
  done
}

is_trunk() {
  local trunk
  for trunk in ${CINODE_BRIDGE_TRUNKS:-}; do
    [ "$trunk" = "$1" ] && return 0
  done
  return 1
}

# port_only_in PORT VID: makes VID the port's only VLAN (untagged, its PVID). Idempotent: the
# VLAN is added first (replacing its flags if present), then every other one is removed, so the
# port is never in two segments at once nor, between the two steps, in none.
port_only_in() {
  local port=$1 vid=$2 other vids
  bridge vlan add dev "$port" vid "$vid" pvid untagged master || die "could not put port $port in VLAN $vid"
  # Read into a variable first: a failure inside `for ... in $(...)` would not stop the script.
  vids=$(port_vids "$port")
  for other in $vids; do
    [ "$other" = "$vid" ] && continue
    bridge vlan del dev "$port" vid "$other" master || die "could not take port $port out of VLAN $other"
  done
}
