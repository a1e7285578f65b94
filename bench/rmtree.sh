#!/usr/bin/env bash
# Remove trees, including ones that hold files of subordinate ids (via `ctr unshare`).
# ctr is $CTR, by default the shipped .build-static/release/ctr (scripts/build.sh).
CTR=${CTR:-$(dirname "$0")/../.build-static/release/ctr}
for d in "$@"; do
  [ -e "$d" ] || continue
  rm -rf "$d" 2>/dev/null || "$CTR" unshare rm -rf "$d"
done
exit 0
