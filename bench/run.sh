#!/usr/bin/env bash
# Container start-up: `ctr run --rm busybox:local true` against `crun run` and `runc run` on a
# rootless bundle of the same image (unpacked by umoci, no network namespace setup beyond an
# empty one, no cgroup), and `podman run --rm` (runc, --network none). Rootless: run as root
# and it measures as ${BENCH_USER:-ctrtest}, or run it as the user you want to measure.
#
# crun 1.8 refuses hybrid cgroup hosts ("cgroups in hybrid mode not supported, drop all
# controllers from cgroupv2") even with --cgroup-manager=disabled; as root this script hides
# the cgroup2 controller list from it in a private mount namespace (bind-mounting an empty
# file over /sys/fs/cgroup/unified/cgroup.controllers). ctr needs no such help.
#
# It measures ctr as it ships: .build-static/release/ctr from scripts/build.sh (CTR=… picks another).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO_DIR=$PWD
CTR=${CTR:-$PWD/.build-static/release/ctr}
[ -x "$CTR" ] || { echo "build first: scripts/build.sh (or set CTR=)" >&2; exit 1; }
for t in hyperfine umoci crun runc podman; do command -v $t >/dev/null || { echo "missing $t (scripts/setup.sh installs it)" >&2; exit 1; }; done

# Where the stores and bundles live: PLACES (default "/dev/shm /var/tmp": tmpfs, and the
# machine's disk, where users keep ~/.local/share/ctr); each place is measured in turn.
PLACES=${PLACES:-/dev/shm /var/tmp}
if [ -z "${BENCH_INNER:-}" ] && [ "$(echo $PLACES | wc -w)" -gt 1 ]; then
  for place in $PLACES; do
    echo "== $place ($(stat -f -c %T "$place"))"
    PLACES=$place bash "$0"
  done
  exit 0
fi

if [ "$(id -u)" -eq 0 ] && [ -z "${BENCH_INNER:-}" ]; then
  U=${BENCH_USER:-ctrtest}
  id "$U" >/dev/null || { echo "no user $U: run scripts/setup.sh" >&2; exit 1; }
  W=$PLACES/ctr-bench-run-$U
  mkdir -p "$W" && chown "$U" "$W"
  : > "$W/empty-controllers"
  HIDE=""
  if [ -f /sys/fs/cgroup/unified/cgroup.controllers ]; then
    HIDE="mount --bind $W/empty-controllers /sys/fs/cgroup/unified/cgroup.controllers &&"
  fi
  exec unshare -m bash -c "$HIDE exec runuser -u $U -- env BENCH_INNER=1 PLACES=$PLACES RUNS=${RUNS:-20} CTR=$CTR PATH=$PATH bash $REPO_DIR/bench/run.sh"
fi

RUNS=${RUNS:-20}
W=$PLACES/ctr-bench-run-$(id -un)
mkdir -p "$W"
cd "$W"
export CTR_ROOT="$W/store"
if [ -z "${XDG_RUNTIME_DIR:-}" ] || [ ! -w "${XDG_RUNTIME_DIR:-/nonexistent}" ]; then
  # a login session's /run/user/UID is a tmpfs: so is this one, wherever the stores are
  export XDG_RUNTIME_DIR="/dev/shm/ctr-bench-xdg-$(id -un)"
  mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
fi
FIXTURE=${CTR_FIXTURES:-/var/tmp/ctr-fixtures}/busybox.tar
[ -f "$FIXTURE" ] || { echo "missing $FIXTURE: run scripts/setup.sh" >&2; exit 1; }

# the same image for everyone
"$REPO_DIR/bench/rmtree.sh" store layout bundle runc-state crun-state podman podman-run
"$CTR" import -q --tag busybox:local --change 'CMD ["sh"]' "$FIXTURE" >/dev/null
"$CTR" save --format oci-dir -o layout busybox:local
umoci unpack --rootless --image layout:local bundle >/dev/null
python3 - <<'EOF'
import json
c = json.load(open("bundle/config.json"))
c["process"]["args"] = ["true"]
c["process"]["terminal"] = False
# no cgroup (rootless on a cgroup v1 host has none to use), a fresh network namespace as ctr --network none
c["mounts"] = [m for m in c["mounts"] if m["type"] != "cgroup"]
c["linux"].pop("resources", None)
c["linux"].pop("cgroupsPath", None)
c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "network"] + [{"type": "network"}]
json.dump(c, open("bundle/config.json", "w"))
EOF
PODMAN="podman --root $W/podman --runroot $W/podman-run --storage-driver overlay --runtime runc --cgroup-manager cgroupfs --events-backend none"
"$CTR" save -o image.tar busybox:local
$PODMAN load -q -i image.tar >/dev/null
PODMAN_IMAGE=$($PODMAN images -q | head -1)

"$CTR" run --rm --network none busybox:local true
(cd bundle && runc --root "$W/runc-state" run bench-check)
(cd bundle && crun --root "$W/crun-state" --cgroup-manager=disabled run bench-check)
$PODMAN run --rm --network none "$PODMAN_IMAGE" true

hyperfine -N --runs "$RUNS" --warmup 3 --export-json run.json \
  -n "ctr run" "$CTR run --rm --network none busybox:local true" \
  -n "crun run" "crun --root $W/crun-state --cgroup-manager=disabled run --bundle $W/bundle c" \
  -n "runc run" "runc --root $W/runc-state run --bundle $W/bundle r" \
  -n "podman run" "$PODMAN run --rm --network none $PODMAN_IMAGE true" >&2

python3 - <<'EOF'
import json
r = {x["command"]: x["mean"] for x in json.load(open("run.json"))["results"]}
c = r["ctr run"]
print("start-up, mean of runs (ms):")
for k, v in r.items():
    print(f"  {k:12s} {v*1000:8.1f}   {'' if k == 'ctr run' else f'ctr is {v/c:.2f}x the speed of ' + k.split()[0]}")
print(f"ctr/crun = {c/r['crun run']:.2f} (goal <= 1.3), podman/ctr = {r['podman run']/c:.1f} (goal >= 5)")
EOF
