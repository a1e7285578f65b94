#!/usr/bin/env bash
# (Re)start the bench registry in DIR with empty storage: bench/registry-restart.sh DIR ADDR
set -u
W=$1 REG=$2
cd "$W"
if [ -f registry.pid ]; then kill "$(cat registry.pid)" 2>/dev/null; fi
for _ in $(seq 1 50); do curl -s "http://$REG/v2/" >/dev/null 2>&1 || break; sleep 0.1; done
rm -rf registry-data
docker-registry serve registry.yml >/dev/null 2>&1 &
echo $! > registry.pid
for _ in $(seq 1 100); do curl -sf "http://$REG/v2/" >/dev/null && exit 0; sleep 0.05; done
echo "the registry did not start" >&2
exit 1
