#!/usr/bin/env bash
# The reclaim command of a static pool: cinode runs it after each use of a node, with
#   CINODE_HOSTNAME  the node's hostname
#   CINODE_IP        its address (empty when the configuration gives none)
#   CINODE_POOL      its pool
# and runs reinstall.yml against the node with Ansible.
#
# Exit 0 puts the node back in `ready`. Any other exit quarantines it as `failed`, and cinode
# takes the last line of stderr as the reason and keeps the end of stderr in the node's event
# history (`cinode admin events --node HOST`). So Ansible's output goes to stderr, and the last
# line says what failed.
#
# cinode kills the command when the pool's reclaim-timeout runs out, and then all the reason says
# is "timed out". This script stops Ansible a little earlier itself (RECLAIM_TIMEOUT, keep it below
# reclaim-timeout) so that the reason names the node and the play.
#
# Settings, from cinode's environment:
#   ANSIBLE_PRIVATE_KEY_FILE  the key Ansible logs in with as root (default /etc/cinode/id_ed25519)
#   RECLAIM_TIMEOUT           how long the play may run (default 25m; timeout(1) syntax)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
: "${CINODE_HOSTNAME:?CINODE_HOSTNAME is not set: this script is run by cinode as a reclaim command}"
: "${CINODE_POOL:?CINODE_POOL is not set: this script is run by cinode as a reclaim command}"
target=${CINODE_IP:-$CINODE_HOSTNAME}
limit=${RECLAIM_TIMEOUT:-25m}

export ANSIBLE_PRIVATE_KEY_FILE=${ANSIBLE_PRIVATE_KEY_FILE:-/etc/cinode/id_ed25519}
# Nothing on the controller beyond this playbook: no retry files, no colours in the history.
export ANSIBLE_RETRY_FILES_ENABLED=false ANSIBLE_NOCOLOR=true ANSIBLE_FORCE_COLOR=false
# A reset keeps the host keys, so they could be checked; a pool that reinstalls from scratch
# gets new host keys each time and cannot check them against a fixed file.
export ANSIBLE_HOST_KEY_CHECKING=${ANSIBLE_HOST_KEY_CHECKING:-False}

echo "reclaim: resetting $CINODE_HOSTNAME ($target) of pool $CINODE_POOL" >&2

status=0
# The trailing comma makes "$target," an inventory of one host rather than a file name.
timeout --kill-after=30s "$limit" \
  ansible-playbook -i "$target," "$here/reinstall.yml" -e "cinode_hostname=$CINODE_HOSTNAME" >&2 || status=$?

case $status in
  0)
    echo "reclaim: $CINODE_HOSTNAME is ready again" >&2
    exit 0
    ;;
  124 | 137)
    echo "reclaim: reinstall.yml on $CINODE_HOSTNAME ran longer than $limit and was stopped" >&2
    ;;
  4)
    echo "reclaim: $CINODE_HOSTNAME ($target) could not be reached over SSH" >&2
    ;;
  127)
    echo "reclaim: ansible-playbook is not installed on the cinode server" >&2
    ;;
  *)
    echo "reclaim: reinstall.yml failed on $CINODE_HOSTNAME (ansible-playbook exited with $status; the task that failed is above)" >&2
    ;;
esac
exit "$status"
