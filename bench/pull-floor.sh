#!/usr/bin/env bash
# The compute a pull cannot skip, done by the fastest stand-alone tools with no store at all:
# every layer of REG/REPO:TAG fetched in parallel, its blob hashed, inflated and the tar hashed
# again (the diff-id), the output thrown away. bench/pull-floor.sh 127.0.0.1:5077 bench/multi 1
set -euo pipefail
REG=$1 REPO=$2 TAG=$3
for t in curl openssl igzip python3; do command -v $t >/dev/null || { echo "missing $t (apt install isal for igzip)" >&2; exit 1; }; done
R=http://$REG/v2/$REPO
layers=$(curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' "$R/manifests/$TAG" |
  python3 -c 'import json,sys; print("\n".join(l["digest"] for l in json.load(sys.stdin)["layers"]))')
for d in $layers; do
  ( curl -sf "$R/blobs/$d" | tee >(openssl dgst -sha256 >/dev/null) | igzip -dc |
      openssl dgst -sha256 >/dev/null ) &
done
wait
