#!/usr/bin/env bash
# Run every test: unit tests, and integration tests that drive the ctr binary as root, as an
# unprivileged user with subordinate ids (ctrtest) and as one without (ctrnosub).
# Installs what it needs first (scripts/setup.sh). CI runs this as root on a fresh clone.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

swift build --build-tests
# the integration tests drive ctr as it ships (CTR_BIN=.build/debug/ctr for a quicker loop)
bash scripts/build.sh
export CTR_BIN="${CTR_BIN:-$PWD/.build-static/release/ctr}"
export CTR_FIXTURES="${CTR_FIXTURES:-/var/tmp/ctr-fixtures}"
if [ "$(id -u)" -ne 0 ]; then
  echo "test: running as $(id -un): root-mode and other-user tests are skipped (they print why)" >&2
fi
swift test --skip-build "$@"
