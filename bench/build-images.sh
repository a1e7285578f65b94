#!/usr/bin/env bash
# ctr build-images against buildah building the same Dockerfile (what `ctr build-images --print`
# writes: the builder stage, the base image, one image per console script), offline: a Python
# project with two console scripts, a C extension, an extra per script from a wheelhouse, on a
# Debian base with python3, pip and venv (the apt repository $CTR_FIXTURES/pyapt served on
# 127.0.0.1). ctr: one `ctr build-images` (one run, three targets). buildah: `buildah bud
# --layers --target T` for the builder and each of the three images (its way to several targets), runc,
# --network host. Each: cold (new store, the base loaded), warm (nothing changed), one source
# file changed. Medians of RUNS (3). Run as root; the stores are on disk (/var/tmp).
set -euo pipefail
cd "$(dirname "$0")/.."
CTR=${CTR:-$PWD/.build-static/release/ctr}
FX=${CTR_FIXTURES:-/var/tmp/ctr-fixtures}
RUNS=${RUNS:-3}
[ -x "$CTR" ] || { echo "build first: scripts/build.sh (or set CTR=)" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
for t in buildah busybox python3; do command -v $t >/dev/null || { echo "missing $t (scripts/setup.sh installs it)" >&2; exit 1; }; done
for f in "$FX/python-bookworm.tar" "$FX/pyapt/Packages" "$FX/apt/hello.deb"; do [ -e "$f" ] || { echo "missing $f (scripts/setup.sh makes it)" >&2; exit 1; }; done

W=/var/tmp/ctr-bench-images
# buildah's overlay mounts of an earlier run go first
grep " $W/" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
rm -rf "$W" && mkdir -p "$W/repo" "$W/p/myproj" "$W/p/wheels"
for d in "$FX"/pyapt/*.deb "$FX/apt/hello.deb"; do ln -sf "$d" "$W/repo/"; done
{ cat "$FX/pyapt/Packages"; echo; awk '/^Package: hello$/,/^$/' "$FX/apt/Packages"; } > "$W/repo/Packages"
PORT=$((26000 + RANDOM % 2000))
busybox httpd -f -p "127.0.0.1:$PORT" -h "$W/repo" & HTTPD=$!
trap 'kill $HTTPD 2>/dev/null || true' EXIT

# the project
cat > "$W/p/pyproject.toml" <<'P'
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"
[project]
name = "myproj"
version = "1.0"
[project.scripts]
myproj-api = "myproj.cli:api"
myproj-worker = "myproj.cli:worker"
[project.optional-dependencies]
myproj_api = ["extra-api"]
myproj_worker = ["extra-worker"]
[tool.setuptools]
packages = ["myproj"]
P
printf 'from setuptools import setup, Extension\nsetup(ext_modules=[Extension("myproj._speed", ["myproj/_speed.c"])])\n' > "$W/p/setup.py"
: > "$W/p/myproj/__init__.py"
printf 'from myproj import _speed\ndef api():\n    print("api", _speed.add(2, 3))\ndef worker():\n    print("worker", _speed.add(20, 3))\n' > "$W/p/myproj/cli.py"
cat > "$W/p/myproj/_speed.c" <<'C'
#define PY_SSIZE_T_CLEAN
#include <Python.h>
static PyObject *add(PyObject *self, PyObject *args) { long a, b; if (!PyArg_ParseTuple(args, "ll", &a, &b)) return NULL; return PyLong_FromLong(a + b); }
static PyMethodDef methods[] = {{"add", add, METH_VARARGS, "add"}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "_speed", NULL, -1, methods};
PyMODINIT_FUNC PyInit__speed(void) { return PyModule_Create(&mod); }
C
printf 'gcc [compile]\npython3-dev [compile platform:dpkg]\nlibc6-dev [compile platform:dpkg]\nhello [platform:dpkg]\n' > "$W/p/bindep.txt"
python3 - "$W/p/wheels" <<'PY'
import base64, hashlib, sys, zipfile
for name in ["extra_api", "extra_worker"]:
    files = {f"{name}.py": "X = 1\n", f"{name}-1.0.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
             f"{name}-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    rec = []
    with zipfile.ZipFile(f"{sys.argv[1]}/{name}-1.0-py3-none-any.whl", "w") as z:
        for p, t in files.items():
            z.writestr(p, t)
            rec.append(f"{p},sha256={base64.urlsafe_b64encode(hashlib.sha256(t.encode()).digest()).rstrip(b'=').decode()},{len(t)}")
        z.writestr(f"{name}-1.0.dist-info/RECORD", "\n".join(rec + [f"{name}-1.0.dist-info/RECORD,,"]) + "\n")
PY

# the base (python3, pip, venv from the served repository), as a docker-archive both load
mkdir -p "$W/basectx"
cat > "$W/basectx/Dockerfile" <<D
FROM pyfix:1
RUN rm -f /etc/apt/sources.list /etc/apt/sources.list.d/* && echo 'deb [trusted=yes] http://127.0.0.1:$PORT/ ./' > /etc/apt/sources.list.d/local.list && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-pip python3-venv >/dev/null && rm -rf /var/lib/apt/lists/*
D
"$CTR" --root "$W/seed" import -q --tag pyfix:1 "$FX/python-bookworm.tar" >/dev/null
"$CTR" --root "$W/seed" build -q --network host -t py:base "$W/basectx" >/dev/null
"$CTR" --root "$W/seed" save --format docker-archive -o "$W/base.tar" py:base
"$CTR" --root "$W/seed" build-images --print --base py:base --find-links wheels --no-index "$W/p" > "$W/Dockerfile"
rm -rf "$W/seed"

ms() { echo $(( $(date +%s%N) / 1000000 )); }
ctr_build() { "$CTR" --root "$W/ctr" build-images -q --base py:base --network host --find-links wheels --no-index "$W/p" > "$W/last.log" 2>&1 || { cat "$W/last.log" >&2; exit 1; }; }
BH=(buildah --root "$W/bh" --runroot "$W/bhrun" --storage-driver overlay)
# buildah 1.28 loses RUN --mount=from=STAGE when a later `bud --target` finds that stage in its
# layer cache (the mount is empty): its builder stage is built and named first, and mounted by
# that name, the same work
sed 's|from=builder,|from=localhost/myproj-builder:latest,|' "$W/Dockerfile" > "$W/Dockerfile.buildah"
buildah_build() {
  for t in builder myproj-base myproj-api myproj-worker; do
    "${BH[@]}" bud -q --runtime runc --network host --layers --target "$t" -t "localhost/${t/#builder/myproj-builder}:latest" -f "$W/Dockerfile.buildah" "$W/p" > "$W/last.log" 2>&1 || { cat "$W/last.log" >&2; exit 1; }
  done
}
for i in $(seq "$RUNS"); do
  echo "run $i…" >&2
  printf 'from myproj import _speed\ndef api():\n    print("api", _speed.add(2, 3))\ndef worker():\n    print("worker", _speed.add(20, 3))\n' > "$W/p/myproj/cli.py"
  rm -rf "$W/ctr" && "$CTR" --root "$W/ctr" load -q -i "$W/base.tar" >/dev/null && "$CTR" --root "$W/ctr" tag "$("$CTR" --root "$W/ctr" images -q | head -1)" py:base
  "${BH[@]}" rm -a >/dev/null 2>&1 || true; "${BH[@]}" rmi -a -f >/dev/null 2>&1 || true
  grep " $W/bh" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$W/bh" "$W/bhrun"
  "${BH[@]}" pull -q "docker-archive:$W/base.tar" >/dev/null && "${BH[@]}" tag "$("${BH[@]}" images -q | head -1)" py:base
  for tool in ctr buildah; do
    t0=$(ms); ${tool}_build; t1=$(ms); echo "$tool cold $((t1 - t0))" >> "$W/times"
    t0=$(ms); ${tool}_build; t1=$(ms); echo "$tool warm $((t1 - t0))" >> "$W/times"
  done
  echo "# changed $i" >> "$W/p/myproj/cli.py"
  for tool in ctr buildah; do t0=$(ms); ${tool}_build; t1=$(ms); echo "$tool onechange $((t1 - t0))" >> "$W/times"; done
done
"${BH[@]}" rmi -a -f >/dev/null 2>&1 || true
grep " $W/" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
python3 - "$W/times" <<'PY'
import sys, statistics
r = {}
for line in open(sys.argv[1]):
    tool, what, v = line.split()
    r.setdefault((tool, what), []).append(int(v) / 1000)
m = {k: statistics.median(v) for k, v in r.items()}
print("three images of a Python project (builder, base, two scripts), median seconds:")
for what, label in [("cold", "cold"), ("warm", "rebuild, nothing changed"), ("onechange", "rebuild, one source file changed")]:
    c, b = m[("ctr", what)], m[("buildah", what)]
    print(f"  {label:34s} ctr {c:6.2f}   buildah {b:6.2f}   buildah/ctr {b / c:5.1f}x")
PY
