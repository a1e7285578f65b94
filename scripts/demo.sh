#!/usr/bin/env bash
# The main job, end to end on a fresh Debian 12 machine with Swift: install what ctr needs,
# build it, make a busybox base image from Debian's busybox-static (no registry involved),
# and run a container from it.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
swift build -c release
CTR="$PWD/.build/release/ctr"
FIXTURES=${CTR_FIXTURES:-/var/tmp/ctr-fixtures}

echo "+ ctr import --tag busybox:local --change 'CMD [\"sh\"]' $FIXTURES/busybox.tar" >&2
"$CTR" import --tag busybox:local --change 'CMD ["sh"]' "$FIXTURES/busybox.tar"
echo "+ ctr images" >&2
"$CTR" images
out=$(mktemp -d)
echo "+ ctr unpack busybox:local $out/busybox" >&2
"$CTR" unpack busybox:local "$out/busybox"
ls "$out/busybox/rootfs"
cat "$out/busybox/metadata.json"
echo "+ ctr run --rm busybox:local sh -c 'echo hello from \$(hostname); id; cat /proc/self/status | grep -E ^(Seccomp|NoNewPrivs|CapEff):'" >&2
"$CTR" run --rm busybox:local sh -c 'echo hello from $(hostname); id; grep -E "^(Seccomp|NoNewPrivs|CapEff):" /proc/self/status'
echo "done. ctr is $CTR (try: $CTR run --rm -it busybox:local sh)" >&2
