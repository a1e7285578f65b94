#!/usr/bin/env bash
# Registry transfer: `ctr pull` against `skopeo copy` (copy only), `skopeo copy` + `umoci
# unpack`, and `podman pull`; `ctr push` against `skopeo copy`. One four-layer image of
# ~350 MB (gzip) from Debian's docker-registry on 127.0.0.1. Run it as the user you want to
# measure (rootless: `sudo -u ctrtest bench/registry.sh`). Prints means and peer/ctr ratios.
# bench/pull-floor.sh runs alongside: the hashing and inflating a pull cannot skip, by the
# fastest stand-alone tools, with nothing written.
# It measures ctr as it ships: .build-static/release/ctr from scripts/build.sh (CTR=… picks another).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO_DIR=$PWD
CTR=${CTR:-$PWD/.build-static/release/ctr}
[ -x "$CTR" ] || { echo "build first: scripts/build.sh (or set CTR=)" >&2; exit 1; }
for t in hyperfine umoci skopeo podman docker-registry igzip; do command -v $t >/dev/null || { echo "missing $t (scripts/setup.sh installs it)" >&2; exit 1; }; done
RUNS=${RUNS:-5}
W=${BENCH_DIR:-/dev/shm/ctr-bench-$(id -un)}   # tmpfs: see bench/layers.sh
mkdir -p "$W"
cd "$W"
PORT=${PORT:-5077}
REG=127.0.0.1:$PORT
export CTR_ROOT="$W/store"
# rootless podman and skopeo want a runtime dir (for auth.json and locks); a bare `sudo -u`
# session has none
if [ -z "${XDG_RUNTIME_DIR:-}" ] || [ ! -w "${XDG_RUNTIME_DIR:-/nonexistent}" ]; then
  export XDG_RUNTIME_DIR="$W/run"
  mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
fi

if [ ! -d tree ]; then
  echo "making the benchmark tree in $W/tree" >&2
  python3 "$REPO_DIR/bench/make-tree.py" tree.tmp && mv tree.tmp tree
fi
if [ ! -f multi/index.json ]; then
  echo "making a four-layer image" >&2
  rm -rf multi && python3 "$REPO_DIR/bench/make-layout.py" tree multi 1
fi

cat > registry.yml <<YML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $W/registry-data
http:
  addr: $REG
YML
start_registry() { "$REPO_DIR/bench/registry-restart.sh" "$W" "$REG"; }
trap '[ -f registry.pid ] && kill "$(cat registry.pid)" 2>/dev/null; rm -f registry.pid' EXIT
start_registry
skopeo copy -q --dest-tls-verify=false oci:multi:1 "docker://$REG/bench/multi:1"
du -sh multi | sed 's/^/image: /' >&2

RM="$REPO_DIR/bench/rmtree.sh"
export CTR
PODMAN="podman --root $W/podman-pull --runroot /tmp/ctr-bench-podman-$(id -u) --storage-driver overlay"

hyperfine -S bash --runs "$RUNS" --warmup 1 --export-json pull.json \
  --prepare "$RM $W/pull-store $W/sk-layout $W/sk-bundle; $PODMAN rmi -af >/dev/null 2>&1 || true" \
  -n "ctr pull" "CTR_ROOT=$W/pull-store $CTR pull -q $REG/bench/multi:1" \
  -n "skopeo copy (copy only)" "skopeo copy -q --src-tls-verify=false docker://$REG/bench/multi:1 oci:$W/sk-layout:1" \
  -n "skopeo copy + umoci unpack" "skopeo copy -q --src-tls-verify=false docker://$REG/bench/multi:1 oci:$W/sk-layout:1 && umoci unpack --rootless --image $W/sk-layout:1 $W/sk-bundle >/dev/null" \
  -n "podman pull" "$PODMAN pull -q --tls-verify=false $REG/bench/multi:1" \
  -n "floor (hash, inflate, hash; no files)" "$REPO_DIR/bench/pull-floor.sh $REG bench/multi 1" >&2

# pushes: a fresh registry each run, and ctr forgets where its blobs came from (no mounts)
"$CTR" load -i multi >/dev/null
hyperfine -S bash --runs "$RUNS" --warmup 1 --export-json push.json \
  --prepare "$REPO_DIR/bench/registry-restart.sh $W $REG && rm -f $W/store/blob-sources.json" \
  -n "ctr push" "$CTR push -q bench:1 $REG/bench/pushed:1" \
  -n "skopeo copy oci: docker://" "skopeo copy -q --dest-tls-verify=false oci:$W/multi:1 docker://$REG/bench/pushed:1" >&2

python3 - <<'PY'
import json
pull = {r["command"]: r["mean"] for r in json.load(open("pull.json"))["results"]}
push = {r["command"]: r["mean"] for r in json.load(open("push.json"))["results"]}
print(f"{'ctr vs peer':<56}{'ctr (s)':>9}{'peer (s)':>9}{'peer/ctr':>10}")
c = pull["ctr pull"]
for k in ["skopeo copy (copy only)", "skopeo copy + umoci unpack", "podman pull",
          "floor (hash, inflate, hash; no files)"]:
    print(f"{'ctr pull vs ' + k:<56}{c:>9.3f}{pull[k]:>9.3f}{pull[k]/c:>9.2f}x")
c = push["ctr push"]
k = "skopeo copy oci: docker://"
print(f"{'ctr push vs ' + k:<56}{c:>9.3f}{push[k]:>9.3f}{push[k]/c:>9.2f}x")
PY
