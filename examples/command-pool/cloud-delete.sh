#!/usr/bin/env bash
# The deprovision command of a command pool on OpenStack: destroys one server. cinode runs it for
# a node after its session, when it failed, or when it was ready for longer than max-ready-age, and
# writes the node on stdin as one line of JSON, `data` being what cloud-create.sh printed:
#
#   {"hostname": "cinode-cloud-20260301-1200-1-a3f9", "ip": "203.0.113.7", "data": {"id": "<server uuid>"}}
#
# (CINODE_HOSTNAME, CINODE_IP and CINODE_POOL are set too.) Exit 0 retires the node for good.
# Another exit is retried by cinode after 2s, 4s, 8s and 16s; after the fifth failure the node is
# left `failed` for an operator, with the last line of stderr as the reason. So a server that is
# already gone counts as deleted: a retry after a delete that did happen must not fail.
#
# The OpenStack credentials come from cinode's environment (OS_CLOUD or the OS_* variables).
set -euo pipefail

node=$(cat)
id=$(jq -r '.data.id // empty' <<<"$node")
hostname=$(jq -r '.hostname // empty' <<<"$node")
if [ -z "$id" ]; then
  # Deleting by name could hit another server of the same name: refuse, an operator looks.
  echo "node ${hostname:-?} has no data.id; it was not created by cloud-create.sh?" >&2
  exit 2
fi

echo "deleting $hostname (server $id)" >&2
if openstack server delete --wait "$id" >&2; then
  echo "deleted $hostname (server $id)" >&2
  exit 0
fi
# The delete failed; it may have failed because the server is already gone.
if ! openstack server show -f value -c id "$id" >/dev/null 2>&1; then
  if openstack server list -f value -c ID --limit 1 >/dev/null 2>&1; then
    echo "server $id of $hostname no longer exists" >&2
    exit 0
  fi
  echo "the cloud does not answer; server $id of $hostname may still exist" >&2
  exit 1
fi
echo "openstack server delete $id ($hostname) failed; the server still exists" >&2
exit 1
