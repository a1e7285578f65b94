#!/usr/bin/env python3
"""Make the benchmark tree: many small files and some large ones (deterministic).

usage: make-tree.py DIR [SMALL_FILES]
~30,000 small text-like files (0.2-16 KiB) in nested directories, symlinks, and four
64 MiB files (two random, two compressible): about 350 MB.
"""
import os, random, sys

root = sys.argv[1]
n_small = int(sys.argv[2]) if len(sys.argv) > 2 else 30000
rng = random.Random(42)
words = [''.join(rng.choice('abcdefghijklmnopqrstuvwxyz') for _ in range(rng.randint(2, 10))) for _ in range(4000)]

def text(n):
    out = []
    size = 0
    while size < n:
        w = rng.choice(words)
        out.append(w)
        size += len(w) + 1
    return (' '.join(out))[:n].encode()

os.makedirs(root, exist_ok=True)
for i in range(n_small):
    d = os.path.join(root, 'usr', 'share', f'd{i % 97:02d}', f'e{i % 13}')
    os.makedirs(d, exist_ok=True)
    p = os.path.join(d, f'f{i}.txt')
    with open(p, 'wb') as f:
        f.write(text(rng.randint(200, 16384)))
    if i % 50 == 0:
        os.symlink(f'f{i}.txt', os.path.join(d, f'l{i}'))
big = os.path.join(root, 'opt', 'big')
os.makedirs(big, exist_ok=True)
for k in range(2):
    with open(os.path.join(big, f'random{k}.bin'), 'wb') as f:
        r = random.Random(k)
        for _ in range(64):
            f.write(r.randbytes(1 << 20))
    with open(os.path.join(big, f'text{k}.txt'), 'wb') as f:
        chunk = text(1 << 20)
        for _ in range(64):
            f.write(chunk)
