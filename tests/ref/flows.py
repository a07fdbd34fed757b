"""Cellpose 3.1.1.3 reference for train/flows.c (tests/test_flows.c).

Runs the real cellpose package (build/pydeps) on 8 bundled label images and
small synthetic cases, and saves, per case <c>:
  <c>.raw     (H, W) int32  the label image as read (tifffile; ids >= 2^31
                            wrap, the C test reads them back as uint32)
  <c>.renum   (H, W) int32  fastremap.renumber(raw, in_place=True)[0]
  <c>.flows   (3, H, W) f32 labels_to_flows channels [1:]: (renum > 0.5),
                            masks_to_flows(renum, device=cpu) as float32
  <c>.diam    ()  f64       utils.diameters(renum)[0]
  <c>.diam_sqrt () f64      the same with np.sqrt instead of numpy's
                            int ** 0.5 (which may be 1 ulp off sqrt)
  <c>.n       ()  int64     number of masks
Image cases also store their path (metadata) so the C test reads the same file.
masks_to_flows with a CPU device dispatches to the numba masks_to_flows_cpu
path (checked below by asserting it equals a direct call of that function).

Run: /usr/bin/python3 tests/ref/flows.py --out build/ref
"""
import os
import sys

import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "build", "pydeps"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fastremap  # noqa: E402
import tifffile  # noqa: E402
from cellpose import dynamics, utils  # noqa: E402

from common import out_dir, save  # noqa: E402

IMAGES = [  # (case name, path relative to the repo root) - the C test has the same list
    ("dsb000", "data/samples/dsb2018_stage1test_fluo/dsbfluo_000_masks.tif"),
    ("dsb009", "data/samples/dsb2018_stage1test_fluo/dsbfluo_009_masks.tif"),
    ("bbbc000", "data/samples/bbbc039_u2os_nuclei/bbbc039_000_masks.tif"),
    ("usii000", "data/samples/usiigaci_phase_contrast/usiigaci_000_masks.tif"),
    ("dsb005", "data/samples/dsb2018_stage1test_fluo/dsbfluo_005_masks.tif"),
    ("dsb010", "data/samples/dsb2018_stage1test_fluo/dsbfluo_010_masks.tif"),
    ("bbbc001", "data/samples/bbbc039_u2os_nuclei/bbbc039_001_masks.tif"),
    ("bbbc002", "data/samples/bbbc039_u2os_nuclei/bbbc039_002_masks.tif"),
]


def synthetic():
    """Small cases: touching cells, a one-pixel cell, border cells, holes,
    non-consecutive and huge ids, an empty image, a full image."""
    cases = {}
    a = np.zeros((23, 31), np.int64)
    a[2:12, 3:14] = 7          # two touching rectangles
    a[2:12, 14:20] = 3
    a[15, 25] = 9              # one-pixel cell
    a[0:5, 26:31] = 12         # corner cell on two borders
    a[17:23, 0:9] = 5          # bottom-left border cell
    a[19, 3] = 0               # with a hole
    yy, xx = np.mgrid[:23, :31]
    a[((yy - 15) ** 2 + (xx - 15) ** 2) <= 9] = 40000  # disc touching the rectangles' neighbour
    cases["touch"] = a
    b = np.zeros((17, 13), np.int64)
    b[1:16, 2] = 4000000000    # a thin vertical line, id beyond the counting table
    b[5, 0:13] = 123456789     # crossing horizontal line (splits the vertical one)
    b[10:14, 6:11] = 2
    b[12, 8] = 4000000000      # a disconnected pixel of the line's label
    cases["lines"] = b
    cases["empty"] = np.zeros((9, 11), np.int64)
    c = np.ones((6, 7), np.int64)  # one cell filling the image (no background)
    c[:, 4:] = 2
    cases["full"] = c
    return cases


def run_case(tensors, name, raw):
    renum = fastremap.renumber(raw.copy(), in_place=True)[0].astype(np.int64)
    mu = dynamics.masks_to_flows(renum, device=torch.device("cpu"))
    if renum.max() > 0:  # the CPU device must select the numba per-mask path
        mu_cpu, _ = dynamics.masks_to_flows_cpu(renum)
        assert np.array_equal(mu, mu_cpu), name
    flows = np.concatenate(((renum > 0.5)[None], mu), axis=0).astype(np.float32)
    diam = float(utils.diameters(renum)[0])
    _, counts = fastremap.unique(renum.astype("int32"), return_counts=True)
    md = np.median(np.sqrt(counts[1:].astype(np.float64))) if len(counts) > 1 else 0.0
    diam_sqrt = float(md / ((np.pi ** 0.5) / 2))
    n = int(renum.max())
    print(f"{name}: {raw.shape} n={n} diam={diam!r} diam_sqrt={diam_sqrt!r}")
    tensors[name + ".raw"] = torch.from_numpy(raw.astype(np.int32))
    tensors[name + ".renum"] = torch.from_numpy(renum.astype(np.int32))
    tensors[name + ".flows"] = torch.from_numpy(flows)
    tensors[name + ".diam"] = torch.tensor(diam, dtype=torch.float64)
    tensors[name + ".diam_sqrt"] = torch.tensor(diam_sqrt, dtype=torch.float64)
    tensors[name + ".n"] = n


def main():
    out = out_dir()
    tensors = {}
    for name, rel in IMAGES:
        raw = tifffile.imread(os.path.join(REPO, rel)).astype(np.int64)
        run_case(tensors, name, raw)
    for name, raw in synthetic().items():
        run_case(tensors, name, raw)
    save("flows", tensors, out)


if __name__ == "__main__":
    main()
