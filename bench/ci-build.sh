#!/usr/bin/env bash
# ctr build inside CI containers against the same build on the host: a rebuild with nothing
# changed and a rebuild after one source file changed, on the Debian fixture, (1) on the host
# (the full sandbox), (2) inside root podman with its defaults (the nested level; the stage's
# files as a real tree, since overlayfs takes no upper dir on the container's overlay root),
# (3) the same with the store on a volume (a CI cache dir: overlayfs takes its upper dir
# there, so no tree), (4) inside root podman under Docker's default seccomp profile (the
# chroot level). Then the
# cost of the chroot level's snapshots: a Dockerfile of 1 and of 11 `RUN true` steps built
# with --no-cache there; (t11 - t1) / 10 is what one RUN step costs on the Debian tree (two
# walks of its ~8k files and the difference), process start included.
# Run as root (podman as root). The store is on disk (/var/tmp), as in a CI job.
# It measures ctr as it ships: .build-static/release/ctr from scripts/build.sh (CTR=… picks another).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO_DIR=$PWD
CTR=${CTR:-$PWD/.build-static/release/ctr}
FX=${CTR_FIXTURES:-/var/tmp/ctr-fixtures}
RUNS=${RUNS:-5}
[ -x "$CTR" ] || { echo "build first: scripts/build.sh (or set CTR=)" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "run as root: it starts root podman containers" >&2; exit 1; }
command -v podman >/dev/null || { echo "missing podman (scripts/setup.sh installs it)" >&2; exit 1; }
[ -f "$FX/debian-bookworm.tar" ] || { echo "missing $FX/debian-bookworm.tar (scripts/setup.sh makes it)" >&2; exit 1; }

W=/var/tmp/ctr-bench-ci
"$REPO_DIR/bench/rmtree.sh" "$W" 2>/dev/null || rm -rf "$W"
mkdir -p "$W/ctx/src" "$W/out"
chmod 777 "$W/out"
python3 - "$W/ctx" <<'EOF'
import os, sys
ctx = sys.argv[1]
for f in range(200):
    open(f"{ctx}/src/f{f}.txt", "w").write(f"file {f}\n" * 50)
open(f"{ctx}/main.txt", "w").write("main\n")
open(f"{ctx}/Dockerfile", "w").write("""FROM deb:fixture
COPY src/ /app/src/
RUN cat /app/src/* | md5sum > /app/sum && useradd -m app
COPY main.txt /app/
RUN wc -c /app/main.txt > /app/size && chown app /app/size
""")
for n in (1, 11):
    os.makedirs(f"{ctx}-runs{n}", exist_ok=True)
    open(f"{ctx}-runs{n}/Dockerfile", "w").write("FROM deb:fixture\n" + "RUN true\n" * n)
EOF

# the measuring script, the same on the host and in the containers: times in ms on stdout
cat > "$W/in.sh" <<'EOF'
set -eu
S=${STORE:-/tmp/store}; C=${CTX:-/ctx}; RUNS=${RUNS:-5}
ms() { echo $(( $(date +%s%N) / 1000000 )); }
rm -rf /tmp/bctx && cp -r "$C" /tmp/bctx && cp -r "$C-runs1" /tmp/bctx-runs1 && cp -r "$C-runs11" /tmp/bctx-runs11
ctr --root "$S" import -q --tag deb:fixture "${FIXTURE:-/fx/debian.tar}" >/dev/null
ctr --root "$S" build -q --network host -t b /tmp/bctx >/dev/null
for i in $(seq "$RUNS"); do
  t0=$(ms); ctr --root "$S" build -q --network host -t b /tmp/bctx >/dev/null; t1=$(ms)
  echo "nochange $((t1 - t0))"
  head -c 16 /dev/urandom | od -An -tx1 > /tmp/bctx/main.txt
  t0=$(ms); ctr --root "$S" build -q --network host -t b /tmp/bctx >/dev/null; t1=$(ms)
  echo "onechange $((t1 - t0))"
done
if [ -n "${SNAPSHOTS:-}" ]; then
  for i in $(seq "$RUNS"); do
    for n in 1 11; do
      t0=$(ms); ctr --root "$S" build -q --no-cache --network host /tmp/bctx-runs$n >/dev/null; t1=$(ms)
      echo "runs$n $((t1 - t0))"
    done
  done
fi
EOF

podman image exists localhost/ctr-bench-debian || podman import -q "$FX/debian-bookworm.tar" localhost/ctr-bench-debian >/dev/null
PODMAN=(podman run --rm --runtime runc --network host --ulimit nofile=1024:1024 --ulimit nproc=4096:4096
        -e RUNS="$RUNS" -v "$CTR:/usr/local/bin/ctr:ro" -v "$FX/debian-bookworm.tar:/fx/debian.tar:ro"
        -v "$W/ctx:/ctx:ro" -v "$W/ctx-runs1:/ctx-runs1:ro" -v "$W/ctx-runs11:/ctx-runs11:ro" -v "$W/in.sh:/in.sh:ro")

echo "host (full sandbox)…" >&2
mkdir -p "$W/bin" && ln -sf "$CTR" "$W/bin/ctr"
rm -rf /tmp/bctx /tmp/bctx-runs1 /tmp/bctx-runs11
PATH="$W/bin:$PATH" STORE="$W/store" CTX="$W/ctx" FIXTURE="$FX/debian-bookworm.tar" RUNS="$RUNS" sh "$W/in.sh" > "$W/out/host.txt"
rm -rf /tmp/bctx /tmp/bctx-runs1 /tmp/bctx-runs11
echo "root podman, defaults…" >&2
"${PODMAN[@]}" localhost/ctr-bench-debian sh /in.sh > "$W/out/podman.txt"
echo "root podman, defaults, the store on a volume…" >&2
mkdir -p "$W/vstore"
"${PODMAN[@]}" -v "$W/vstore:/vstore" -e STORE=/vstore/store localhost/ctr-bench-debian sh /in.sh > "$W/out/volume.txt"
echo "root podman, Docker's seccomp profile…" >&2
"${PODMAN[@]}" -e SNAPSHOTS=1 --security-opt "seccomp=$REPO_DIR/Tests/Fixtures/seccomp-docker-default.json" \
  localhost/ctr-bench-debian sh /in.sh > "$W/out/docker.txt"

python3 - "$W/out" <<'EOF'
import sys, statistics
d = sys.argv[1]
def load(name):
    r = {}
    for line in open(f"{d}/{name}.txt"):
        k, v = line.split()
        r.setdefault(k, []).append(int(v) / 1000)
    return {k: statistics.median(v) for k, v in r.items()}
h, p, v, c = load("host"), load("podman"), load("volume"), load("docker")
print("ctr build, median of runs (s), store on disk:")
print(f"  {'':34s} {'host':>7s} {'podman':>7s} {'podman, store on a volume':>26s} {'docker-seccomp':>15s}")
for k, what in [("nochange", "rebuild, nothing changed"), ("onechange", "rebuild, one source file changed")]:
    print(f"  {what:34s} {h[k]:7.3f} {p[k]:7.3f} {v[k]:26.3f} {c[k]:15.3f}   vs host: {p[k]/h[k]:.1f}x {v[k]/h[k]:.1f}x {c[k]/h[k]:.1f}x")
per = (c["runs11"] - c["runs1"]) / 10
print(f"chroot level, Debian tree: 1 RUN {c['runs1']:.3f} s, 11 RUNs {c['runs11']:.3f} s: {per:.3f} s per RUN step (goal < 0.3 s)")
EOF
