#!/usr/bin/env bash
# The main job, end to end on a fresh Debian 12 machine with Swift: install what ctr needs,
# build it, make a busybox base image from Debian's busybox-static (no registry involved),
# build the example in examples/hello on it and run the result.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
bash scripts/build.sh
CTR="$PWD/.build-static/release/ctr"
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
echo "+ ctr build -t hello:1 examples/hello" >&2
"$CTR" build -t hello:1 examples/hello
echo "+ ctr run --rm hello:1 ctr-user" >&2
"$CTR" run --rm hello:1 ctr-user
echo "done. ctr is $CTR (try: $CTR run --rm -it busybox:local sh)" >&2
