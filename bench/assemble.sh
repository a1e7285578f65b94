#!/usr/bin/env bash
# Pants' OCI chain against ctr alone, on the Python fixture (a 238 MB Debian + python3 base):
#   base into a layout:   skopeo copy docker-archive:… oci:L:base     vs ctr copy (the same)
#   add the app + config: umoci insert --rootless + umoci config      vs ctr append --add … --change ENTRYPOINT
#   publish:              skopeo copy oci:L:app docker-archive:…      vs ctr push oci:L:app docker-archive:…
# Each cold (a new layout; ctr with a new store), as a build system runs it per target.
# Medians of RUNS runs (3). Store and layouts on disk (/var/tmp). Run as any user.
set -euo pipefail
cd "$(dirname "$0")/.."
CTR=${CTR:-$PWD/.build-static/release/ctr}
FX=${CTR_FIXTURES:-/var/tmp/ctr-fixtures}
RUNS=${RUNS:-3}
[ -x "$CTR" ] || { echo "build first: scripts/build.sh (or set CTR=)" >&2; exit 1; }
for t in skopeo umoci python3; do command -v $t >/dev/null || { echo "missing $t (scripts/setup.sh installs it)" >&2; exit 1; }; done
[ -f "$FX/python-bookworm.tar" ] || { echo "missing $FX/python-bookworm.tar (scripts/setup.sh makes it)" >&2; exit 1; }

W=${TMPDIR:-/var/tmp}/ctr-bench-assemble-$(id -u)
rm -rf "$W" && mkdir -p "$W/app"
"$CTR" --root "$W/seed" import -q --tag python:fixture "$FX/python-bookworm.tar" >/dev/null
"$CTR" --root "$W/seed" save --format docker-archive -o "$W/python.tar" python:fixture
rm -rf "$W/seed"
printf 'print("hello")\n' > "$W/app/__main__.py"
python3 -m zipapp "$W/app" -o "$W/app.pex" -p '/usr/bin/env python3'
export SOURCE_DATE_EPOCH=1700000000
ms() { echo $(( $(date +%s%N) / 1000000 )); }
t() { local t0; t0=$(ms); "$@" >/dev/null 2>"$W/err" || { cat "$W/err" >&2; exit 1; }; echo $(( $(ms) - t0 )); }

for i in $(seq "$RUNS"); do
  echo "run $i…" >&2
  rm -rf "$W/p" "$W/c" && mkdir -p "$W/p" "$W/c"
  a=$(t skopeo copy -q "docker-archive:$W/python.tar" "oci:$W/p/L:base")
  b=$(t sh -c "umoci insert --rootless --image '$W/p/L:base' --tag app '$W/app.pex' /app/app.pex && umoci config --image '$W/p/L:app' --config.entrypoint /app/app.pex")
  c=$(t skopeo copy -q "oci:$W/p/L:app" "docker-archive:$W/p/app.tar:app:1")
  echo "peer $a $b $c" >> "$W/times"
  a=$(t "$CTR" --root "$W/c/store" copy -q "docker-archive:$W/python.tar" "oci:$W/c/L:base")
  b=$(t "$CTR" --root "$W/c/store" append --base "oci:$W/c/L:base" --add "$W/app.pex:/app/app.pex" --chmod 0755 --change 'ENTRYPOINT ["/app/app.pex"]' -t "oci:$W/c/L:app")
  c=$(t "$CTR" --root "$W/c/store" push "oci:$W/c/L:app" "docker-archive:$W/c/app.tar:app:1")
  echo "ctr $a $b $c" >> "$W/times"
done
python3 - "$W/times" <<'PY'
import sys, statistics
rows = {"peer": [], "ctr": []}
for line in open(sys.argv[1]):
    k, *v = line.split()
    rows[k].append([int(x) / 1000 for x in v])
med = {k: [statistics.median(c) for c in zip(*v)] for k, v in rows.items()}
labels = ["base into a layout (copy)", "add the app + entrypoint", "layout to docker-archive"]
print("Pants' chain (skopeo, umoci) vs ctr, Python base, median seconds:")
for i, l in enumerate(labels):
    p, c = med["peer"][i], med["ctr"][i]
    print(f"  {l:30s} skopeo/umoci {p:6.2f}   ctr {c:6.2f}   peer/ctr {p / c:5.1f}x")
p, c = sum(med["peer"]), sum(med["ctr"])
print(f"  {'all three':30s} skopeo/umoci {p:6.2f}   ctr {c:6.2f}   peer/ctr {p / c:5.1f}x")
PY
