#!/usr/bin/env bash
# The Concourse pipeline build, as a task would run it: ctr's task image (scripts/task-image.sh)
# in root podman with its defaults, against `buildah bud --layers` in the same kind of
# container (root podman, defaults; the container's root an overlay of this machine's, where
# Debian's buildah is). One Dockerfile: FROM an IMAGE_ARG_ base (the Debian fixture), RUN
# apt-get install from a repository served on 127.0.0.1, COPY a file. Each tool: cold (an
# empty cache), then warm (a brand-new container, the cache dir of the cold run restored),
# then warm with one source file changed. Both write a docker-archive of the image (ctr's
# image/image.tar; buildah push docker-archive:). Medians of RUNS runs (3).
# buildah needs, there: --isolation chroot and --storage-driver vfs (its overlay driver and its
# OCI isolation need mounts the container refuses); no privileges beyond podman's defaults.
# Run as root. It measures ctr as it ships (CTR=… picks another binary).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO_DIR=$PWD
CTR=${CTR:-$PWD/.build-static/release/ctr}
FX=${CTR_FIXTURES:-/var/tmp/ctr-fixtures}
RUNS=${RUNS:-3}
[ -x "$CTR" ] || { echo "build first: scripts/build.sh (or set CTR=)" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "run as root: it starts root podman containers" >&2; exit 1; }
for t in podman buildah busybox; do command -v $t >/dev/null || { echo "missing $t (scripts/setup.sh installs it)" >&2; exit 1; }; done
[ -f "$FX/apt/Packages" ] || { echo "missing $FX/apt (scripts/setup.sh makes it)" >&2; exit 1; }

W=/var/tmp/ctr-bench-task
rm -rf "$W" && mkdir -p "$W/src" "$W/base" "$W/out"
PORT=$((18000 + RANDOM % 2000))
busybox httpd -f -p "127.0.0.1:$PORT" -h "$FX/apt" & HTTPD=$!
trap 'kill $HTTPD 2>/dev/null || true' EXIT
"$CTR" --root "$W/store" import -q --tag deb:fixture "$FX/debian-bookworm.tar" >/dev/null
"$CTR" --root "$W/store" save --format docker-archive -o "$W/base/deb.tar" deb:fixture
echo "v1" > "$W/src/app.txt"
cat > "$W/src/Dockerfile" <<EOF
ARG base_image
FROM \${base_image}
RUN rm -f /etc/apt/sources.list /etc/apt/sources.list.d/* && echo 'deb [trusted=yes] http://127.0.0.1:$PORT/ ./' > /etc/apt/sources.list.d/local.list && apt-get update -qq && apt-get install -y -qq hello >/dev/null && rm -rf /var/lib/apt/lists/* && hello
COPY app.txt /app.txt
EOF

echo "task image…" >&2
CTR="$CTR" bash scripts/task-image.sh "$W/task-image.tar" >&2
podman load -q -i "$W/task-image.tar" >/dev/null
ENGINE=(podman run --rm --runtime runc --network host --ulimit nofile=1024:1024 --ulimit nproc=4096:4096)
ms() { echo $(( $(date +%s%N) / 1000000 )); }

# ctr: the task dir as Concourse lays it out, each input and output a volume
ctr_task() {  # CACHEDIR
  rm -rf "$W/out" && mkdir -p "$W/out"
  "${ENGINE[@]}" -w /tmp/build/t -v "$W/src:/tmp/build/t/src:ro" -v "$W/base:/tmp/build/t/base:ro" \
    -v "$W/out:/tmp/build/t/image" -v "$1:/tmp/build/t/cache" \
    -e CONTEXT=src -e IMAGE_ARG_base_image=base/deb.tar localhost/ctr-build-task:latest build > "$W/last.log" 2>&1 \
    || { cat "$W/last.log" >&2; exit 1; }
  [ -s "$W/out/image.tar" ] || { echo "ctr: no image.tar" >&2; exit 1; }
}
# buildah: its storage in the cache volume, this machine's root as the container's (an overlay)
buildah_task() {  # CACHEDIR
  rm -rf "$W/out" && mkdir -p "$W/out"
  "${ENGINE[@]}" -v "$W:/b" -v "$1:/cache" --rootfs /:O sh -c \
    "buildah --storage-driver vfs --root /cache/bh --runroot /tmp/bhr bud -q --layers --isolation chroot --network host \
       --build-arg base_image=docker-archive:/b/base/deb.tar -t localhost/app:1 /b/src >/dev/null \
     && buildah --storage-driver vfs --root /cache/bh --runroot /tmp/bhr push -q localhost/app:1 docker-archive:/b/out/image.tar" \
    > "$W/last.log" 2>&1 || { cat "$W/last.log" >&2; exit 1; }
  [ -s "$W/out/image.tar" ] || { echo "buildah: no image.tar" >&2; exit 1; }
}

for tool in ctr buildah; do
  for i in $(seq "$RUNS"); do
    echo "$tool run $i…" >&2
    echo "v1" > "$W/src/app.txt"
    rm -rf "$W/cache-$tool" && mkdir -p "$W/cache-$tool"
    t0=$(ms); ${tool}_task "$W/cache-$tool"; t1=$(ms); echo "$tool cold $((t1 - t0))" >> "$W/times"
    t0=$(ms); ${tool}_task "$W/cache-$tool"; t1=$(ms); echo "$tool warm $((t1 - t0))" >> "$W/times"
    echo "v$i$RANDOM" > "$W/src/app.txt"
    t0=$(ms); ${tool}_task "$W/cache-$tool"; t1=$(ms); echo "$tool onechange $((t1 - t0))" >> "$W/times"
    du -sm "$W/cache-$tool" | awk -v t=$tool '{print t " cachemb " $1 * 1000}' >> "$W/times"
  done
done

python3 - "$W/times" <<'EOF'
import sys, statistics
r = {}
for line in open(sys.argv[1]):
    tool, what, v = line.split()
    r.setdefault((tool, what), []).append(int(v) / 1000)
m = {k: statistics.median(v) for k, v in r.items()}
print("pipeline build in a root podman container (defaults), median (s):")
for what, label in [("cold", "cold (empty cache)"), ("warm", "warm (new container, cache restored)"), ("onechange", "warm, one source file changed")]:
    c, b = m[("ctr", what)], m[("buildah", what)]
    print(f"  {label:40s} ctr {c:7.2f}   buildah {b:7.2f}   buildah/ctr {b / c:5.1f}x")
print(f"  cache dir after a run: ctr {m[('ctr', 'cachemb')]:.0f} MB, buildah {m[('buildah', 'cachemb')]:.0f} MB")
EOF
