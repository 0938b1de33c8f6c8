#!/usr/bin/env bash
# The provision command of a command pool on OpenStack: creates CINODE_COUNT servers and prints
# one JSON line per server on stdout, as cinode reads it:
#
#   {"hostname": "cinode-cloud-20260301-1200-1-a3f9", "ip": "203.0.113.7", "data": {"id": "<server uuid>"}}
#
# cinode gives `data` back to cloud-delete.sh on stdin when the node is deprovisioned, so the id
# is all that script needs. cinode sets, from the pool:
#   CINODE_COUNT   how many servers to create
#   CINODE_POOL    the pool's name (servers are named after it, and tagged with it)
#   CINODE_VER     its ver, e.g. 9-stream
#   CINODE_ARCH    its arch, e.g. aarch64
#   CINODE_FLAVOR  its flavor, or empty for a flavorless pool
#
# Each line is printed as soon as its server answers over SSH. When a later server fails, the
# script exits non-zero, and cinode still takes the servers already printed (they exist and cost
# money) and records the failure with this script's stderr. A server that fails half way is
# deleted here, since cinode never learns of it.
#
# The OpenStack credentials come from cinode's environment: OS_CLOUD naming an entry of
# clouds.yaml, or the OS_* variables of an openrc file. Settings, with their defaults:
#   CLOUD_NETWORK   the network to attach (default: ci)
#   CLOUD_KEY_NAME  the keypair whose public half is cinode's contextualize private-key (default: cinode)
#   CLOUD_SSH_WAIT  seconds to wait for sshd after the server is ACTIVE (default: 300)
set -euo pipefail

: "${CINODE_COUNT:?CINODE_COUNT is not set: this script is run by cinode as a provision command}"
: "${CINODE_POOL:?CINODE_POOL is not set}"
: "${CINODE_VER:?CINODE_VER is not set}"
: "${CINODE_ARCH:?CINODE_ARCH is not set}"
network=${CLOUD_NETWORK:-ci}
key_name=${CLOUD_KEY_NAME:-cinode}
ssh_wait=${CLOUD_SSH_WAIT:-300}

# What the pool's ver, arch and flavor are called in this cloud. Edit to match its image and
# flavor names (openstack image list, openstack flavor list).
case "$CINODE_VER/$CINODE_ARCH" in
  9-stream/x86_64) image=CentOS-Stream-GenericCloud-9-x86_64 ;;
  9-stream/aarch64) image=CentOS-Stream-GenericCloud-9-aarch64 ;;
  10-stream/x86_64) image=CentOS-Stream-GenericCloud-10-x86_64 ;;
  10-stream/aarch64) image=CentOS-Stream-GenericCloud-10-aarch64 ;;
  *)
    echo "no image for ver=$CINODE_VER arch=$CINODE_ARCH; add one to $0" >&2
    exit 2
    ;;
esac
case "${CINODE_FLAVOR:-}" in
  '') flavor=m1.medium ;;
  tiny) flavor=m1.small ;;
  small) flavor=m1.medium ;;
  large) flavor=m1.xlarge ;;
  *)
    echo "no cloud flavor for flavor=$CINODE_FLAVOR; add one to $0" >&2
    exit 2
    ;;
esac

# cinode logs in as root to put a project's keys in root's authorized_keys; cloud images refuse
# root by default. With disable_root off, cloud-init gives root the keypair's key plainly.
user_data=$(mktemp)
trap 'rm -f "$user_data"' EXIT
printf '#cloud-config\ndisable_root: false\n' >"$user_data"

# The first IPv4 address of a server, from `openstack server show/create -f json`. Newer
# clients give addresses as {"net": ["10.0.0.5", ...]}, older ones as "net=10.0.0.5, fd00::5".
first_ipv4='
  .addresses
  | if type == "object" then [.[][] | if type == "object" then .addr else . end]
    else [scan("[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+")] end
  | map(select(test("^[0-9]+(\\.[0-9]+){3}$")))
  | first // empty'

# Waits until the server's sshd answers, for at most ssh_wait seconds.
wait_for_ssh() {
  local ip=$1 deadline=$((SECONDS + ssh_wait))
  # shellcheck disable=SC2016 # $1 is expanded by the inner bash, which gets the address as an argument
  until timeout 5 bash -c ': </dev/tcp/"$1"/22' _ "$ip" 2>/dev/null; do
    if ((SECONDS >= deadline)); then return 1; fi
    sleep 5
  done
}

# Deletes a server that did not make it, so that it does not run unseen.
discard() {
  echo "deleting $1 ($2), which did not come up" >&2
  openstack server delete --wait "$2" >&2 || echo "could not delete $1 ($2): delete it by hand" >&2
}

for ((i = 1; i <= CINODE_COUNT; i++)); do
  # Hostnames must be unique in cinode: the pool, the time, the index and a random suffix.
  name="cinode-$CINODE_POOL-$(date -u +%Y%m%d-%H%M%S)-$i-$(od -An -N2 -tx2 /dev/urandom | tr -d ' ')"
  echo "creating $name ($image, $flavor) in pool $CINODE_POOL" >&2
  if ! server=$(openstack server create --wait -f json \
      --image "$image" --flavor "$flavor" --network "$network" --key-name "$key_name" \
      --user-data "$user_data" --property "cinode-pool=$CINODE_POOL" "$name"); then
    # With --wait, a server that went to ERROR makes the command fail, yet it exists.
    if id=$(openstack server show -f value -c id "$name" 2>/dev/null); then discard "$name" "$id"; fi
    echo "openstack server create $name failed" >&2
    exit 1
  fi
  id=$(jq -r .id <<<"$server")
  ip=$(jq -r "$first_ipv4" <<<"$server")
  if [ -z "$ip" ]; then
    discard "$name" "$id"
    echo "server $name has no IPv4 address on network $network" >&2
    exit 1
  fi
  if ! wait_for_ssh "$ip"; then
    discard "$name" "$id"
    echo "server $name ($ip) did not answer on port 22 within ${ssh_wait}s" >&2
    exit 1
  fi
  jq -cn --arg hostname "$name" --arg ip "$ip" --arg id "$id" '{hostname: $hostname, ip: $ip, data: {id: $id}}'
  echo "created $name ($ip), id $id" >&2
done
