"""Shared helpers for the PyTorch reference scripts (tests/ref/<op>.py).

Each script builds small odd-shaped inputs (H, W not multiples of tile sizes,
C not a multiple of 8, batch 1 and 3), runs PyTorch's op forward and backward
in float32 (double where it says so), and saves inputs, outputs and gradients
with `save(op, tensors)` to <out>/<op>.safetensors, which the C test reads.

Run: /usr/bin/python3 tests/ref/<op>.py --out build/ref
"""
import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_np  # noqa: E402

torch.set_num_threads(1)
torch.backends.mkldnn.enabled = False  # the plain reference kernels


def out_dir():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="build/ref")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    return args.out


def gen(seed):
    g = torch.Generator().manual_seed(seed)
    return g


def rand(g, *shape, lo=-1.0, hi=1.0):
    return (torch.rand(*shape, generator=g, dtype=torch.float32) * (hi - lo) + lo)


def save(op, tensors, out=None):
    """tensors: dict name -> torch tensor or python int (stored as I64 scalar)."""
    items = []
    for k, v in tensors.items():
        if isinstance(v, (int, bool)):
            items.append((k, np.array(int(v), dtype=np.int64)))
        else:
            items.append((k, v.detach().contiguous().cpu().numpy()))
    path = os.path.join(out or out_dir(), op + ".safetensors")
    safetensors_np.save(path, items, {"op": op, "torch": torch.__version__})
    print(f"wrote {path} ({len(items)} tensors)")
