#!/usr/bin/env bash
# Makes sure a Docker engine is up where one can be started (root, with dockerd installed);
# otherwise prints one line saying why, and the Docker-backed tests skip. Never fails.
set -u
if docker info >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v dockerd >/dev/null; then
    echo "ensure-docker: no Docker engine and none can be started here (needs root and docker.io); docker tests will skip"
    exit 0
fi
echo "ensure-docker: starting dockerd (log: /var/log/restem-dockerd.log)"
nohup dockerd >/var/log/restem-dockerd.log 2>&1 &
for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && { echo "ensure-docker: dockerd is up"; exit 0; }
    sleep 1
done
echo "ensure-docker: dockerd did not come up in 60 s (see /var/log/restem-dockerd.log); docker tests will skip"
exit 0
