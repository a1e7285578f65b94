#!/usr/bin/env bash
# Dockerfile builds: `ctr build` against `buildah bud --layers` (rootless, runc, --network
# host) on the same Dockerfile and context (600 small files, two COPY and two RUN steps on the
# busybox base): a cold build (--no-cache), a rebuild with nothing changed, and a rebuild after
# one source file changed. Run as root to measure as ${BENCH_USER:-ctrtest}, or as the user.
# It measures ctr as it ships: .build-static/release/ctr from scripts/build.sh (CTR=… picks another).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO_DIR=$PWD
CTR=${CTR:-$PWD/.build-static/release/ctr}
[ -x "$CTR" ] || { echo "build first: scripts/build.sh (or set CTR=)" >&2; exit 1; }
for t in hyperfine buildah runc; do command -v $t >/dev/null || { echo "missing $t (scripts/setup.sh installs it)" >&2; exit 1; }; done

if [ "$(id -u)" -eq 0 ] && [ -z "${BENCH_INNER:-}" ]; then
  U=${BENCH_USER:-ctrtest}
  W=/dev/shm/ctr-bench-build-$U
  mkdir -p "$W" && chown "$U" "$W"
  exec runuser -u "$U" -- env BENCH_INNER=1 RUNS="${RUNS:-10}" CTR="$CTR" PATH="$PATH" bash "$REPO_DIR/bench/build.sh"
fi

RUNS=${RUNS:-10}
W=/dev/shm/ctr-bench-build-$(id -un)
mkdir -p "$W"
cd "$W"
export CTR_ROOT="$W/store"
export XDG_RUNTIME_DIR="$W/xdg"
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
FIXTURE=${CTR_FIXTURES:-/var/tmp/ctr-fixtures}/busybox.tar
"$REPO_DIR/bench/rmtree.sh" store bh bhrun ctx
"$CTR" import -q --tag busybox:local "$FIXTURE" >/dev/null
"$CTR" save -o base.tar busybox:local
BUILDAH="buildah --root $W/bh --runroot $W/bhrun --storage-driver overlay"
$BUILDAH pull -q oci-archive:base.tar >/dev/null
$BUILDAH tag "$($BUILDAH images -q | head -1)" localhost/busybox:local

mkdir -p ctx/src
python3 - <<'EOF'
import os
for d in range(20):
    os.makedirs(f"ctx/src/d{d}", exist_ok=True)
    for f in range(30):
        open(f"ctx/src/d{d}/f{f}.txt", "w").write(f"file {d}/{f}\n" * 40)
open("ctx/main.txt", "w").write("main\n")
open("ctx/Dockerfile", "w").write("""ARG BASE=busybox:local
FROM ${BASE}
WORKDIR /app
COPY src/ ./src/
RUN find /app/src -type f | wc -l > /app/count && cat /app/src/*/* | md5sum > /app/sum
COPY main.txt ./
RUN wc -c main.txt > /app/size
CMD ["cat", "/app/count"]
""")
EOF

CB="$CTR build -q --network host -t bench:ctr ctx"
BB="$BUILDAH bud -q --layers --runtime runc --isolation oci --network host --build-arg BASE=localhost/busybox:local -t bench:buildah ctx"
$CB >/dev/null && $BB >/dev/null
hyperfine --runs "$RUNS" --warmup 1 --export-json cold.json \
  -n "ctr cold" "$CTR build -q --no-cache --network host -t bench:ctr ctx" \
  -n "buildah cold" "$BUILDAH bud -q --no-cache --layers --runtime runc --isolation oci --network host --build-arg BASE=localhost/busybox:local -t bench:buildah ctx" >&2
hyperfine --runs "$RUNS" --warmup 1 --export-json nochange.json \
  -n "ctr no-change" "$CB" -n "buildah no-change" "$BB" >&2
hyperfine --runs "$RUNS" --warmup 1 --export-json onechange.json \
  --prepare "head -c 16 /dev/urandom | od -An -tx1 > ctx/main.txt" \
  -n "ctr one-change" "$CB" -n "buildah one-change" "$BB" >&2

python3 - <<'EOF'
import json
print("build, mean of runs (s):")
for f, what in [("cold.json", "cold (--no-cache)"), ("nochange.json", "no change"), ("onechange.json", "one file changed")]:
    r = {x["command"].split()[0]: x["mean"] for x in json.load(open(f))["results"]}
    print(f"  {what:18s} ctr {r['ctr']:6.3f}   buildah {r['buildah']:6.3f}   buildah/ctr {r['buildah']/r['ctr']:5.1f}x")
EOF
