#!/bin/sh
# A bare `redis-server` (no config file) as the official image runs it: protected mode off, so
# other containers on the network can connect (the network is the boundary, as in that image).
set -e
if [ "$1" = redis-server ]; then
  shift
  exec redis-server "$@" --protected-mode no
fi
exec "$@"
