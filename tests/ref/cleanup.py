"""Cellpose 3.1.1.3 reference for infer/cleanup.c (tests/test_cleanup.c).

Damaged label images are built from bundled ground truth: pairs of touching
cells merged into one label (its flows disagree with the network's), holes
punched (4-connected to nothing; one hole touching the outside only
diagonally), small fragments added as new labels, one label enclosed by
another. The "network" flows are 5 x masks_to_flows(original labels) plus
float32 noise. Per case <c> it saves:
  <c>.masks    (H, W) int64   the damaged masks (input)
  <c>.dp       (2, H, W) f32  raw network flows dP (compute_masks' dP)
  <c>.err      (max,) f64     metrics.flow_error(masks, dp)[0]
  <c>.flowrm   (H, W) int64   dynamics.remove_bad_flow_masks(masks, dp, 0.4)
  <c>.fill15   (H, W) int64   utils.fill_holes_and_remove_small_masks(flowrm, 15)
  <c>.fill0    (H, W) int64   the same on the damaged masks with min_size 0
  <c>.fill40   (H, W) int64   the same on the damaged masks with min_size 40

Run: /usr/bin/python3 tests/ref/cleanup.py --out build/ref
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
from cellpose import dynamics, metrics, utils  # noqa: E402

from common import out_dir, save  # noqa: E402

IMAGES = [  # (case, path) - the C test has the same list
    ("dsb000", "data/samples/dsb2018_stage1test_fluo/dsbfluo_000_masks.tif"),
    ("bbbc000", "data/samples/bbbc039_u2os_nuclei/bbbc039_000_masks.tif"),
    ("usii000", "data/samples/usiigaci_phase_contrast/usiigaci_000_masks.tif"),
]


def merge_neighbours(m, npairs):
    """Merge npairs horizontally touching label pairs (right one into left)."""
    done = 0
    H, W = m.shape
    for y in range(0, H, 7):
        for x in range(W - 1):
            a, b = m[y, x], m[y, x + 1]
            if a and b and a != b:
                m[m == b] = a
                done += 1
                break
        if done == npairs:
            break
    return m


def damage(lab, seed):
    rng = np.random.default_rng(seed)
    m = lab.copy()
    m = merge_neighbours(m, 3)
    ids = [i for i in np.unique(m) if i]
    for i in ids[::4]:  # punch a hole near the centroid of every 4th label
        ys, xs = np.nonzero(m == i)
        cy, cx = int(ys.mean()), int(xs.mean())
        if m[cy, cx] == i:
            m[max(cy - 1, 0):cy + 2, max(cx - 1, 0):cx + 1] = 0
    # fragments: 2x2 and 3x5 new labels in the background
    nxt = int(m.max()) + 1
    bg = np.argwhere(m == 0)
    for k in range(12):
        y, x = bg[rng.integers(len(bg))]
        h, w = (2, 2) if k % 2 == 0 else (3, 5)
        sl = m[y:y + h, x:x + w]
        sl[sl == 0] = nxt
        nxt += 1
    return m


def synthetic():
    """Enclosed label, diagonal-only hole, ring, one-pixel labels, gaps in ids."""
    m = np.zeros((40, 50), np.int64)
    m[2:20, 2:20] = 1
    m[8:12, 8:12] = 2        # label enclosed by label 1 (fill overwrites it)
    m[25:35, 5:15] = 3
    m[29:31, 9:11] = 0       # plain hole
    m[4:16, 25:40] = 5
    m[9, 25] = 0             # hole at the box border: not a hole
    m[10, 26] = 0            # diagonal neighbour of the border pixel: a hole in 4-connectivity
    m[22:38, 22:38] = 7      # ring
    m[26:34, 26:34] = 0
    m[30, 45] = 9            # one-pixel label
    m[38:40, 45:50] = 11
    dp = (5.0 * dynamics.masks_to_flows(m, device=torch.device("cpu"))).astype(np.float32)
    dp[:, 22:38, 22:30] *= -1  # the ring's left half points the wrong way: removed
    return m, dp


def run_case(name, m, dp, t):
    err = metrics.flow_error(m, dp, torch.device("cpu"))[0] if m.max() > 0 else np.zeros(0)
    flowrm = dynamics.remove_bad_flow_masks(m.copy(), dp.copy(), threshold=0.4)
    t[name + ".masks"] = torch.from_numpy(m.astype(np.int64))
    t[name + ".dp"] = torch.from_numpy(dp)
    t[name + ".err"] = torch.from_numpy(np.asarray(err, np.float64))
    t[name + ".flowrm"] = torch.from_numpy(flowrm.astype(np.int64))
    t[name + ".fill15"] = torch.from_numpy(
        utils.fill_holes_and_remove_small_masks(flowrm.astype(np.int32).copy(), 15).astype(np.int64))
    for ms in (0, 40):
        t[name + ".fill%d" % ms] = torch.from_numpy(
            utils.fill_holes_and_remove_small_masks(m.astype(np.int32).copy(), ms).astype(np.int64))
    nrm = int((np.unique(m) != 0).sum() - (np.unique(flowrm) != 0).sum())
    print(f"{name}: {m.shape} {int(m.max())} labels, {nrm} removed by flow error, "
          f"{int(t[name + '.fill15'].max())} after fill/min_size 15")


def main():
    out = out_dir()
    t = {}
    for k, (name, path) in enumerate(IMAGES):
        lab = tifffile.imread(os.path.join(REPO, path)).astype(np.int64)
        fastremap.renumber(lab, in_place=True)
        mu = dynamics.masks_to_flows(lab, device=torch.device("cpu"))
        rng = np.random.default_rng(100 + k)
        dp = (5.0 * mu + rng.normal(0, 0.5, mu.shape)).astype(np.float32)
        run_case(name, damage(lab, k), dp, t)
    m, dp = synthetic()
    run_case("syn", m, dp, t)
    save("cleanup", t, out)


if __name__ == "__main__":
    main()
