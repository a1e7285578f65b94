#!/usr/bin/env bash
# Build the Concourse task image for `ctr oci-build-task` with ctr itself, offline:
#
#   scripts/task-image.sh OUT      # OUT: a docker-archive tagged $TAG (podman load, skopeo copy, ctr push take it)
#
# The image: the Debian fixture ($CTR_FIXTURES/debian-bookworm.tar, made by scripts/setup.sh),
# the shipped static ctr ($CTR, default .build-static/release/ctr from scripts/build.sh) at
# /usr/local/bin/ctr, `build` beside it (what a task's `run: {path: build}` starts),
# newuidmap/newgidmap (uidmap and libsubid4 from $CTR_FIXTURES/apt), the host's CA bundle,
# libcurl4 and the libraries it needs beyond the base ($CTR_FIXTURES/libcurl, downloaded by
# scripts/setup.sh; ctr loads libcurl for registry pulls and pushes), and a user `ci`
# (uid 1000) with subordinate ids 100000:65536 for jobs that run as a user. The build itself
# takes no network. Without $CTR_FIXTURES/libcurl the image is made without libcurl (a warning
# says so): inside it a FROM that needs a pull then stops with one line naming libcurl4.
#
# Env: CTR, CTR_FIXTURES, TAG (default localhost/ctr-build-task:latest), TMPDIR.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${1:?usage: scripts/task-image.sh OUT (a docker-archive)}
ctr=${CTR:-$repo/.build-static/release/ctr}
fixtures=${CTR_FIXTURES:-/var/tmp/ctr-fixtures}
tag=${TAG:-localhost/ctr-build-task:latest}
debian=$fixtures/debian-bookworm.tar
certs=/etc/ssl/certs/ca-certificates.crt

die() { echo "task-image: $*" >&2; exit 1; }
[ -x "$ctr" ] || die "$ctr: no ctr binary (bash scripts/build.sh makes the shipped one, or set CTR)"
[ -r "$debian" ] || die "$debian: no Debian fixture (run scripts/setup.sh)"
for d in uidmap libsubid4; do [ -r "$fixtures/apt/$d.deb" ] || die "$fixtures/apt/$d.deb: missing (run scripts/setup.sh)"; done
[ -r "$certs" ] || die "$certs: the host has no CA bundle (apt-get install ca-certificates)"
case $out in /*) ;; *) out=$PWD/$out ;; esac
[ -d "$(dirname "$out")" ] || die "$(dirname "$out"): no such directory"

tmp=$(mktemp -d "${TMPDIR:-/var/tmp}/ctr-task-image.XXXXXX")
cleanup() { "$ctr" --root "$tmp/store" unshare rm -rf "$tmp/store" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
ctx=$tmp/ctx
mkdir -p "$ctx/debs"
# the binary is large: a hard link when the temp dir is on its file system
ln "$ctr" "$ctx/ctr" 2>/dev/null || cp "$ctr" "$ctx/ctr"
chmod 0755 "$ctx/ctr" 2>/dev/null || true
cp "$fixtures/apt/uidmap.deb" "$fixtures/apt/libsubid4.deb" "$ctx/debs/"
mkdir -p "$ctx/debs/curl"
if ls "$fixtures"/libcurl/libcurl4.deb >/dev/null 2>&1; then
  cp "$fixtures"/libcurl/*.deb "$ctx/debs/curl/"
else
  echo "task-image: warning: no $fixtures/libcurl/libcurl4.deb (scripts/setup.sh downloads it): the image will have no registry access" >&2
fi
cp "$certs" "$ctx/ca-certificates.crt"
chmod 0644 "$ctx/ca-certificates.crt"
printf '#!/bin/sh\nexec /usr/local/bin/ctr oci-build-task "$@"\n' > "$ctx/build"
chmod 0755 "$ctx/build"
# setcap for the RUN step: the host's, bound in with its own directory (it needs only libcap2
# and libc, which the Debian base has)
caps=
mkdir -p "$ctx/tools"
if setcap_bin=$(command -v setcap 2>/dev/null) || { [ -x /usr/sbin/setcap ] && setcap_bin=/usr/sbin/setcap; } || { [ -x /sbin/setcap ] && setcap_bin=/sbin/setcap; }; then
  cp "$setcap_bin" "$ctx/tools/setcap"
  caps=yes
fi

# newuidmap/newgidmap: setuid root as the package ships them would need CAP_SYS_ADMIN over the
# user namespace they map, which a container's default capability set lacks; file
# capabilities (cap_setuid / cap_setgid) are what rootless podman's and buildah's images use.
# The step sets them with the host's setcap; where the host has none, the binaries stay setuid
# (CAPS=no in the step), which works for root-run jobs and a privileged container only.
cat > "$ctx/Dockerfile" <<EOF
FROM ctr-task-image/debian:fixture
COPY ctr /usr/local/bin/ctr
COPY build /usr/local/bin/build
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ARG CAPS=no
RUN --mount=type=bind,source=debs,target=/tmp/debs --mount=type=bind,source=tools,target=/tmp/tools \\
    dpkg -i /tmp/debs/libsubid4.deb /tmp/debs/uidmap.deb \$(find /tmp/debs/curl -name "*.deb") > /dev/null \\
 && rm -rf /var/log/dpkg.log /var/cache/debconf/*-old /var/lib/dpkg/*-old \\
 && if [ "\$CAPS" = yes ]; then \\
      chmod u-s /usr/bin/newuidmap /usr/bin/newgidmap \\
   && /tmp/tools/setcap cap_setuid=ep /usr/bin/newuidmap \\
   && /tmp/tools/setcap cap_setgid=ep /usr/bin/newgidmap; \\
    fi
RUN useradd -u 1000 -m -s /bin/bash ci \\
 && echo ci:100000:65536 > /etc/subuid \\
 && echo ci:100000:65536 > /etc/subgid \\
 && mkdir -p /tmp/build && chmod 1777 /tmp/build
ENV HOME=/root
WORKDIR /tmp/build
CMD ["build"]
EOF

store=$tmp/store
"$ctr" --root "$store" import -q --tag ctr-task-image/debian:fixture "$debian" > /dev/null
"$ctr" --root "$store" build --network none --build-arg "CAPS=${caps:-no}" -t "$tag" \
  -o "type=docker-archive,dest=$out.partial" "$ctx" >&2
mv -f "$out.partial" "$out"
echo "task-image: $out ($tag)" >&2
