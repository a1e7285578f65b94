#!/usr/bin/env bash
# Build ctr as it ships: release, with the Swift runtime and libstdc++ linked in (no
# libswift*.so or libstdc++.so to load and relocate on every start, and one less library a CI
# image must have) and not position-independent. The binary is .build-static/release/ctr; the
# demo, the integration tests and the benchmarks all run this one.
set -euo pipefail
cd "$(dirname "$0")/.."
# swiftc links -lstdc++ itself; a linker script of that name, found first, makes it the archive
extra=()
stdcxx=$(g++ -print-file-name=libstdc++.a 2>/dev/null || true)
if [ -n "$stdcxx" ] && [ -f "$stdcxx" ]; then
  mkdir -p .build-static/stdcxx
  echo "INPUT($stdcxx)" > .build-static/stdcxx/libstdc++.so
  extra=(-Xlinker "-L$PWD/.build-static/stdcxx")
else
  echo "build: no libstdc++.a (g++ is not installed): libstdc++ stays a shared library" >&2
fi
# libarchive, OpenSSL's libcrypto, zstd, zlib and libseccomp are linked in from their archives
# (CSYS_STATIC_LIBS: csys_lazy.c binds them directly instead of loading them on first use), so
# the binary runs in a CI image that has none of them; libarchive's own needs come along (nettle,
# acl, xz, lz4, bzip2). libcurl and ISA-L stay loaded on first use: Debian ships no archive of
# ISA-L, and libcurl's needs Kerberos and LDAP, which have none either. Their symbols are not
# exported (the static-stdlib link passes --exclude-libs ALL).
static=(archive lzma zstd bz2 z crypto seccomp)
for l in "${static[@]}"; do
  a=$(gcc -print-file-name="lib$l.a" 2>/dev/null || true)
  if [ ! -f "$a" ]; then
    echo "build: no lib$l.a: run scripts/setup.sh (it installs the -dev packages with the archives)" >&2
    exit 1
  fi
  extra+=(-Xlinker "$a")
done
swift build -c release --static-swift-stdlib -Xswiftc -Xclang-linker -Xswiftc -no-pie -Xcc -DCSYS_STATIC_LIBS \
  "${extra[@]}" --scratch-path .build-static >&2
