#!/usr/bin/env bash
# Layer handling: `ctr unpack` against `umoci unpack --rootless`, and `ctr save`/`ctr load`
# against `skopeo copy`, on the same ~350 MB image (30,000 small files, four 64 MiB files).
# Run it as the user you want to measure (rootless: e.g. `sudo -u ctrtest bench/layers.sh`).
# Prints the hyperfine means and ratios (peer time / ctr time: above 1 means ctr is faster).
# It measures ctr as it ships: .build-static/release/ctr from scripts/build.sh (CTR=… picks another).
set -euo pipefail
cd "$(dirname "$0")/.."
CTR=${CTR:-$PWD/.build-static/release/ctr}
[ -x "$CTR" ] || { echo "build first: scripts/build.sh (or set CTR=)" >&2; exit 1; }
for t in hyperfine umoci skopeo; do command -v $t >/dev/null || { echo "missing $t (scripts/setup.sh installs it)" >&2; exit 1; }; done
RUNS=${RUNS:-5}
# The work dir is on tmpfs by default: on ext4, creating tens of thousands of files right after
# deleting as many (the previous run's output) spends seconds in the inode allocator
# (recently_deleted/find_inode_bit), for every tool alike, and buries the difference.
W=${BENCH_DIR:-/dev/shm/ctr-bench-$(id -un)}
mkdir -p "$W"
cd "$W"
export CTR_ROOT="$W/store"

# before each run: remove the previous output (files of subordinate ids need `ctr unshare`)
export CTR
PREP="$OLDPWD/bench/rmtree.sh"

if [ ! -d tree ]; then
  echo "making the benchmark tree in $W/tree" >&2
  python3 "$OLDPWD/bench/make-tree.py" tree.tmp && mv tree.tmp tree
fi
if ! "$CTR" inspect bench:1 >/dev/null 2>&1; then
  "$CTR" import --tag bench:1 tree >/dev/null
fi
rm -rf layout && "$CTR" save --format oci-dir -o layout bench:1
"$CTR" save -o image.tar bench:1
du -sh tree layout | sed 's/^/size: /' >&2

hyperfine --runs "$RUNS" --warmup 1 --export-json unpack.json \
  --prepare "$PREP out-ctr out-umoci" \
  -n "ctr unpack" "$CTR unpack bench:1 out-ctr" \
  -n "umoci unpack --rootless" "umoci unpack --rootless --image layout:1 out-umoci" >&2

hyperfine --runs "$RUNS" --warmup 1 --export-json save.json \
  --prepare "$PREP save-ctr.tar save-skopeo.tar" \
  -n "ctr save" "$CTR save -o save-ctr.tar bench:1" \
  -n "skopeo copy oci: -> oci-archive:" "skopeo copy -q oci:layout:1 oci-archive:save-skopeo.tar:bench:1" >&2

hyperfine --runs "$RUNS" --warmup 1 --export-json load.json \
  --prepare "$PREP load-store load-skopeo" \
  -n "ctr load (verify, store, unpack)" "CTR_ROOT=$W/load-store $CTR load -i image.tar" \
  -n "skopeo copy oci-archive: -> oci: (copy only)" "skopeo copy -q oci-archive:image.tar oci:load-skopeo:1" >&2

hyperfine --runs "$RUNS" --warmup 1 --export-json load-podman.json \
  --prepare "$PREP load-store; podman --root $W/podman --runroot /tmp/ctr-bench-podman-$(id -u) system reset -f >/dev/null 2>&1 || true" \
  -n "ctr load (verify, store, unpack)" "CTR_ROOT=$W/load-store $CTR load -i image.tar" \
  -n "podman load (store, unpack)" "podman --root $W/podman --runroot /tmp/ctr-bench-podman-$(id -u) load -q -i image.tar" >&2

python3 - <<'PY'
import json
print(f"{'ctr vs peer':<60}{'ctr (s)':>9}{'peer (s)':>9}{'peer/ctr':>10}")
for f in ["unpack.json", "save.json", "load.json", "load-podman.json"]:
    r = json.load(open(f))["results"]
    c, p = r[0], r[1]
    print(f"{c['command'] + ' vs ' + p['command']:<60}"[:60] + f"{c['mean']:>9.3f}{p['mean']:>9.3f}{p['mean']/c['mean']:>9.2f}x")
PY
