#!/bin/sh
# A local fleet in one command: Redis (or a Redis Cluster), N ringgate nodes
# and HAProxy on loopback addresses.  tools/fleet/fleet.py says how.
#   tools/fleet.sh up 3 [--cluster] [--workers W] [-- NODE ARGS...]
#   tools/fleet.sh status
#   tools/fleet.sh down
exec /usr/bin/python3 "$(dirname "$0")/fleet/fleet.py" "$@"
