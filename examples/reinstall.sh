#!/bin/sh
# Example reclaim command. cinode runs it after a session releases a node, with the node in
# CINODE_HOSTNAME, CINODE_IP and CINODE_POOL. Exit 0 returns the node to service; any other exit
# (or running past reclaim-timeout) quarantines it as failed, with stderr's last line as reason.
# A real one would reinstall the machine, e.g.:
#   ansible-playbook -i "$CINODE_IP," reinstall.yml
echo "reclaiming $CINODE_HOSTNAME ($CINODE_IP) of pool $CINODE_POOL"
sleep 1
