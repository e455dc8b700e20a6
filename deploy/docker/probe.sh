#!/bin/bash
# Asks this container's Switchboard node for one of its HTTP endpoints (default /healthz) and
# succeeds only on a 200. Used by the image's HEALTHCHECK and by docker-compose.yml.
#
# Why bash and /dev/tcp rather than curl or wget: the runtime image already has bash, so the probe
# adds no package, no library and no CVE feed to follow. The request is plain HTTP/1.0 to
# 127.0.0.1 on $PORT, which the node answers like any other client.
#
#   probe.sh            # liveness: /healthz
#   probe.sh /readyz    # readiness: store and Redis reachable, not draining
set -eu
path="${1:-/healthz}"
port="${PORT:-5001}"
exec 3<>"/dev/tcp/127.0.0.1/${port}"
printf 'GET %s HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n' "$path" >&3
IFS=' ' read -r -t 3 _version status _reason <&3
exec 3<&-
[ "$status" = 200 ]
