#!/usr/bin/env bash
# Prepare a Debian 12 machine for building and testing ctr. Idempotent.
#  - installs the apt packages ctr links against and the peers the tests and benches use
#  - creates the unprivileged test users: ctrtest (with /etc/subuid and /etc/subgid ranges)
#    and ctrnosub (without)
#  - builds the base image fixtures under $CTR_FIXTURES (default /var/tmp/ctr-fixtures)
# As a non-root user it uses sudo for the steps that need root, and says so.
set -euo pipefail

FIXTURES=${CTR_FIXTURES:-/var/tmp/ctr-fixtures}
# (xz-utils and bzip2 only make test fixtures: ctr decompresses xz and bzip2 with libarchive)
# The -dev packages also bring the static archives scripts/build.sh links into the shipped
# binary: libarchive, libcrypto (libssl-dev), zstd, libseccomp, zlib, xz (liblzma), bzip2.
PACKAGES=(
  build-essential pkg-config libseccomp-dev libarchive-dev libssl-dev libzstd-dev libisal-dev libcurl4-openssl-dev
  zlib1g-dev liblzma-dev libbz2-dev
  uidmap busybox-static docker-registry apache2-utils debootstrap xz-utils bzip2
  skopeo umoci crun runc podman buildah slirp4netns passt fuse-overlayfs hyperfine isal libcap2-bin
)

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  SUDO=(sudo)
  echo "setup: not root, so apt and user creation run through sudo" >&2
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- test users ---------------------------------------------------------------------------
add_user() {
  id "$1" >/dev/null 2>&1 || "${SUDO[@]}" useradd --create-home --shell /bin/bash "$1"
}
add_user ctrtest
add_user ctrnosub
# ctrtest gets 65536 subordinate ids; ctrnosub none (it tests the single-mapping fallback)
for f in /etc/subuid /etc/subgid; do
  "${SUDO[@]}" touch "$f"
  grep -q '^ctrtest:' "$f" || echo "ctrtest:200000:65536" | "${SUDO[@]}" tee -a "$f" >/dev/null
  if grep -q '^ctrnosub:' "$f"; then "${SUDO[@]}" sed -i '/^ctrnosub:/d' "$f"; fi
  # root's own range, for `ctr run --userns auto` as root (podman's --userns=auto wants one too)
  grep -q '^root:' "$f" || echo "root:1000000:65536" | "${SUDO[@]}" tee -a "$f" >/dev/null
done

# --- /dev/fuse ---------------------------------------------------------------------------
# Debian's udev rule (fuse3) makes /dev/fuse 0666; some VMs and container hosts leave it 0600,
# which keeps unprivileged users from fuse-overlayfs, ctr's root filesystem fallback
if [ -c /dev/fuse ] && [ "$(stat -c %a /dev/fuse)" != 666 ]; then
  echo "setup: /dev/fuse was $(stat -c %a /dev/fuse); making it 0666 as Debian's udev rule does" >&2
  "${SUDO[@]}" chmod 0666 /dev/fuse
fi

# --- fixtures -------------------------------------------------------------------------------
"${SUDO[@]}" mkdir -p "$FIXTURES"
"${SUDO[@]}" chmod 0755 "$FIXTURES"
# (an older fixture had the 0700 root of mktemp -d, which users other than root cannot enter)
if [ ! -s "$FIXTURES/busybox.tar" ] || [ /bin/busybox -nt "$FIXTURES/busybox.tar" ] ||
   tar -tvf "$FIXTURES/busybox.tar" 2>/dev/null | sed -n 1p | grep -q '^drwx------'; then
  # a busybox root filesystem from Debian's busybox-static: the base image of the demo and tests
  tmp=$(mktemp -d)
  chmod 0755 "$tmp"
  mkdir -p "$tmp"/{bin,etc,tmp,root,home/user,var/tmp,proc,sys,dev}
  cp /bin/busybox "$tmp/bin/busybox"
  for a in $("$tmp/bin/busybox" --list); do
    [ "$a" = busybox ] || ln -sf busybox "$tmp/bin/$a"
  done
  ln -s bin "$tmp/sbin"
  mkdir -p "$tmp/usr" && ln -s ../bin "$tmp/usr/bin" && ln -s ../bin "$tmp/usr/sbin"
  printf 'root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$tmp/etc/passwd"
  printf 'root:x:0:\nwheel:x:10:user\nuser:x:1000:\nnogroup:x:65534:\n' >"$tmp/etc/group"
  echo "owned by uid 1000" >"$tmp/home/user/owned-by-1000"
  chmod 1777 "$tmp/tmp" "$tmp/var/tmp"
  chmod 0700 "$tmp/root"
  "${SUDO[@]}" chown -R 1000:1000 "$tmp/home/user" 2>/dev/null || true
  "${SUDO[@]}" tar --numeric-owner --sort=name --mtime=@1700000000 -C "$tmp" -cf "$FIXTURES/busybox.tar.tmp" .
  "${SUDO[@]}" mv "$FIXTURES/busybox.tar.tmp" "$FIXTURES/busybox.tar"
  "${SUDO[@]}" rm -rf "$tmp"
  "${SUDO[@]}" chmod 0644 "$FIXTURES/busybox.tar"
fi
if [ ! -s "$FIXTURES/debian-bookworm.tar" ] && [ -z "${CTR_SKIP_DEBIAN:-}" ]; then
  # a Debian bookworm root file system (debootstrap minbase, ~200 MB): the base of the builds
  # that run apt-get and useradd. Needs Debian's mirror; without it those tests say why and skip.
  tmp=$(mktemp -d)
  if "${SUDO[@]}" debootstrap --variant=minbase bookworm "$tmp/root" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$tmp/log" 2>&1; then
    "${SUDO[@]}" tar --numeric-owner --sort=name --mtime=@1700000000 -C "$tmp/root" -cf "$FIXTURES/debian-bookworm.tar.tmp" .
    "${SUDO[@]}" mv "$FIXTURES/debian-bookworm.tar.tmp" "$FIXTURES/debian-bookworm.tar"
    "${SUDO[@]}" chmod 0644 "$FIXTURES/debian-bookworm.tar"
  else
    echo "setup: debootstrap failed (no Debian mirror?): the Debian build tests will skip; last lines:" >&2
    tail -3 "$tmp/log" >&2
  fi
  "${SUDO[@]}" rm -rf "$tmp"
fi
# apt_repo DEBDIR DEST: the .debs of DEBDIR as a flat apt repository DEST (each named
# PACKAGE.deb, a Packages index), staged in DEST.tmp and moved in whole
apt_repo() {
  local debs=$1 dest=$2 deb name index
  index=$(mktemp)
  "${SUDO[@]}" rm -rf "$dest.tmp"
  "${SUDO[@]}" mkdir -p "$dest.tmp"
  for deb in "$debs"/*.deb; do
    name=$(dpkg-deb -f "$deb" Package).deb
    { dpkg-deb -f "$deb"; echo "Filename: ./$name"; echo "Size: $(stat -c %s "$deb")"
      echo "SHA256: $(sha256sum "$deb" | cut -c1-64)"; echo; } >> "$index"
    "${SUDO[@]}" cp "$deb" "$dest.tmp/$name"
  done
  "${SUDO[@]}" cp "$index" "$dest.tmp/Packages"
  rm -f "$index"
  "${SUDO[@]}" chmod -R a+rX "$dest.tmp"
  "${SUDO[@]}" rm -rf "$dest"
  "${SUDO[@]}" mv "$dest.tmp" "$dest"
}
if ! grep -qs '^Package: uidmap' "$FIXTURES/apt/Packages"; then
  # a small apt repository, served on 127.0.0.1 by the tests that build inside CI containers
  # (no mirror at test time): Debian's `hello` (53 kB), which the builds install, and uidmap
  # with libsubid4, which give a job image's user subordinate ids
  tmp=$(mktemp -d)
  chmod 755 "$tmp"
  if (cd "$tmp" && apt-get download -qq hello uidmap libsubid4 2>/dev/null) && [ "$(ls "$tmp"/*.deb 2>/dev/null | wc -l)" = 3 ]; then
    apt_repo "$tmp" "$FIXTURES/apt"
  else
    echo "setup: apt-get download hello uidmap libsubid4 failed (no Debian mirror?): the CI-container build tests will skip" >&2
  fi
  rm -rf "$tmp"
fi
if [ ! -s "$FIXTURES/libcurl/libcurl4.deb" ] && [ -s "$FIXTURES/debian-bookworm.tar" ]; then
  # libcurl4 and what it needs beyond the Debian fixture, for the oci-build-task image
  # (scripts/task-image.sh): ctr loads libcurl for registry commands
  tmp=$(mktemp -d)
  chmod 755 "$tmp"
  tar -xOf "$FIXTURES/debian-bookworm.tar" ./var/lib/dpkg/status | sed -n 's/^Package: //p' | sort -u > "$tmp/have"
  apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces --no-enhances libcurl4 2>/dev/null \
    | grep -E '^[a-z0-9]' | sed 's/:.*//' | sort -u > "$tmp/want"
  need=$(comm -23 "$tmp/want" "$tmp/have" | tr '\n' ' ')
  if [ -n "$need" ] && (cd "$tmp" && apt-get download -qq $need 2>/dev/null) && ls "$tmp"/libcurl4_*.deb >/dev/null 2>&1; then
    "${SUDO[@]}" mkdir -p "$FIXTURES/libcurl.tmp"
    for deb in "$tmp"/*.deb; do "${SUDO[@]}" cp "$deb" "$FIXTURES/libcurl.tmp/$(dpkg-deb -f "$deb" Package).deb"; done
    "${SUDO[@]}" chmod -R a+rX "$FIXTURES/libcurl.tmp"
    "${SUDO[@]}" rm -rf "$FIXTURES/libcurl"
    "${SUDO[@]}" mv "$FIXTURES/libcurl.tmp" "$FIXTURES/libcurl"
  else
    echo "setup: apt-get download of libcurl4's packages failed (no Debian mirror?): the task image will have no registry access" >&2
  fi
  rm -rf "$tmp"
fi
if ! grep -qs '^Package: python3-pip$' "$FIXTURES/pyapt/Packages"; then
  if [ -s "$FIXTURES/debian-bookworm.tar" ]; then
    # a flat apt repository like apt/, for the Python builds on the Debian fixture with no mirror
    # at test time: python3, pip, venv, python3-dev, gcc and libc6-dev with every package of their
    # closure the fixture lacks or has at another version than the mirror's (libpython3.11-dev's
    # zlib1g-dev, say, wants the mirror's exact zlib1g). Alternatives and providers of virtual
    # packages (<libc-dev>, <debconf-2.0>) are all in the closure; the <virtual> names are not.
    tmp=$(mktemp -d)
    chmod 755 "$tmp"
    mkdir "$tmp/debs"
    tar -xOf "$FIXTURES/debian-bookworm.tar" ./var/lib/dpkg/status | awk -v RS= -F'\n' '/(^|\n)Status: install ok installed/ {
        p = v = ""; for (i = 1; i <= NF; i++) { if ($i ~ /^Package: /) p = substr($i, 10); if ($i ~ /^Version: /) v = substr($i, 10) }
        print p "=" v }' | sort -u > "$tmp/have"
    { apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces --no-enhances \
        python3 python3-pip python3-venv python3-dev gcc libc6-dev 2>/dev/null || true; } \
      | grep -E '^[a-z0-9]' | sed 's/:.*//' | sort -u > "$tmp/names"
    { xargs apt-cache show --no-all-versions < "$tmp/names" 2>/dev/null || true; } \
      | awk '/^Package: /{p = $2} /^Version: /{print p "=" $2}' | sort -u > "$tmp/want"
    need=$(comm -23 "$tmp/want" "$tmp/have" | tr '\n' ' ')
    if grep -q '^python3-pip=' "$tmp/want" && (cd "$tmp/debs" && apt-get download -qq $need 2>/dev/null) &&
       [ "$(ls "$tmp/debs" | wc -l)" = "$(comm -23 "$tmp/want" "$tmp/have" | wc -l)" ]; then
      apt_repo "$tmp/debs" "$FIXTURES/pyapt"
    else
      echo "setup: apt-get download of python3's and gcc's packages failed (no Debian mirror?): the Python build tests will skip" >&2
    fi
    rm -rf "$tmp"
  else
    echo "setup: no Debian fixture, so no pyapt repository: the Python build tests will skip" >&2
  fi
fi
if [ ! -s "$FIXTURES/python-bookworm.tar" ]; then
  if [ -s "$FIXTURES/debian-bookworm.tar" ] && [ -s "$FIXTURES/pyapt/Packages" ]; then
    # the Debian fixture with python3 (and its closure: no pip, no gcc) installed from pyapt/,
    # a base image with an interpreter. apt in the chroot sees only pyapt/ and keeps its lists,
    # cache and logs in the tree's /tmp, which goes after, so the rest is as in the Debian fixture.
    tmp=$(mktemp -d)
    chmod 755 "$tmp"
    "${SUDO[@]}" mkdir "$tmp/root"
    "${SUDO[@]}" tar --numeric-owner -xpf "$FIXTURES/debian-bookworm.tar" -C "$tmp/root"
    "${SUDO[@]}" cp -a "$FIXTURES/pyapt" "$tmp/root/tmp/pyapt"
    echo 'deb [trusted=yes] file:/tmp/pyapt ./' | "${SUDO[@]}" tee "$tmp/root/tmp/pyapt.list" >/dev/null
    "${SUDO[@]}" mkdir -p "$tmp/root/tmp/lists/partial" "$tmp/root/tmp/cache/archives/partial" "$tmp/root/tmp/log"
    apt=(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive apt-get -q
         -o Dir::Etc::SourceList=/tmp/pyapt.list -o Dir::Etc::SourceParts=/tmp/none
         -o Dir::State::Lists=/tmp/lists -o Dir::Cache=/tmp/cache -o Dir::Log=/tmp/log)
    if "${SUDO[@]}" chroot "$tmp/root" "${apt[@]}" update >"$tmp/log" 2>&1 &&
       "${SUDO[@]}" chroot "$tmp/root" "${apt[@]}" install -y --no-install-recommends python3 >>"$tmp/log" 2>&1 &&
       "${SUDO[@]}" rm -rf "$tmp/root/tmp/pyapt" "$tmp/root/tmp/pyapt.list" "$tmp/root/tmp/lists" "$tmp/root/tmp/cache" "$tmp/root/tmp/log" &&
       "${SUDO[@]}" chroot "$tmp/root" /usr/bin/python3 -c 'import zipapp, json' >>"$tmp/log" 2>&1; then
      "${SUDO[@]}" tar --numeric-owner --sort=name --mtime=@1700000000 -C "$tmp/root" -cf "$FIXTURES/python-bookworm.tar.tmp" .
      "${SUDO[@]}" mv "$FIXTURES/python-bookworm.tar.tmp" "$FIXTURES/python-bookworm.tar"
      "${SUDO[@]}" chmod 0644 "$FIXTURES/python-bookworm.tar"
    else
      echo "setup: installing python3 into the Debian fixture failed: the Python image tests will skip; last lines:" >&2
      tail -3 "$tmp/log" >&2
    fi
    "${SUDO[@]}" rm -rf "$tmp"
  else
    echo "setup: no Debian fixture or pyapt repository, so no python-bookworm.tar: the Python image tests will skip" >&2
  fi
fi
echo "setup: ready (fixtures in $FIXTURES)" >&2
