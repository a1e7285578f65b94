#!/usr/bin/env python3
"""Turn the benchmark tree into a multi-layer OCI image layout (deterministic).

usage: make-layout.py TREE LAYOUT TAG
Layers: three slices of usr/share (many small files) and opt/big (four 64 MiB files),
gzip level 6 as most registries' images are.
"""
import gzip, hashlib, io, json, os, sys, tarfile

tree, layout, tag = sys.argv[1], sys.argv[2], sys.argv[3]
os.makedirs(f"{layout}/blobs/sha256", exist_ok=True)

def put(data):
    d = hashlib.sha256(data).hexdigest()
    with open(f"{layout}/blobs/sha256/{d}", "wb") as f:
        f.write(data)
    return "sha256:" + d, len(data)

def layer(paths):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
        for p in paths:
            t.add(os.path.join(tree, p), arcname=p, recursive=True,
                  filter=lambda ti: (setattr(ti, "uid", 0), setattr(ti, "gid", 0), setattr(ti, "uname", ""),
                                     setattr(ti, "gname", ""), setattr(ti, "mtime", 1700000000), ti)[-1])
    tar = raw.getvalue()
    gz = gzip.compress(tar, compresslevel=6, mtime=0)
    diff = "sha256:" + hashlib.sha256(tar).hexdigest()
    d, n = put(gz)
    return {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": n}, diff

share = sorted(os.listdir(os.path.join(tree, "usr/share")))
slices = [share[0:32], share[32:64], share[64:]]
layers, diffs = [], []
for s in slices:
    l, d = layer([f"usr/share/{x}" for x in s])
    layers.append(l); diffs.append(d)
l, d = layer(["opt"])
layers.append(l); diffs.append(d)
config = {"architecture": "amd64", "os": "linux", "created": "2023-11-14T22:13:20Z",
          "config": {"Cmd": ["sh"]}, "rootfs": {"type": "layers", "diff_ids": diffs}}
cd, cn = put(json.dumps(config, sort_keys=True).encode())
manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cn},
            "layers": layers}
md, mn = put(json.dumps(manifest, sort_keys=True).encode())
with open(f"{layout}/index.json", "w") as f:
    json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
               "digest": md, "size": mn, "annotations": {"org.opencontainers.image.ref.name": tag,
               "io.containerd.image.name": "docker.io/library/bench:" + tag}}]}, f)
with open(f"{layout}/oci-layout", "w") as f:
    f.write('{"imageLayoutVersion":"1.0.0"}')
