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
swift build -c release --static-swift-stdlib -Xswiftc -Xclang-linker -Xswiftc -no-pie "${extra[@]}" --scratch-path .build-static >&2
