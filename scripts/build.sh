#!/usr/bin/env bash
# Build ctr as it ships: release, with the Swift runtime linked in (no libswift*.so to map on
# every start) and not position-independent. The binary is .build-static/release/ctr; the
# demo, the integration tests and the benchmarks all run this one.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --static-swift-stdlib -Xswiftc -Xclang-linker -Xswiftc -no-pie --scratch-path .build-static >&2
