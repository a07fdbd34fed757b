"""Cellpose 3.1.1.3 reference for eval/metrics.c (tests/test_metrics.c).

Ground truth: bundled label images (dsbfluo_009 has 329 objects). Predictions
are perturbations of it: shifted, eroded, merged neighbours, split cells,
missing objects, extra objects, a mix of all, an empty prediction, an empty
ground truth and both empty; plus non-consecutive labels. Per case <c>:
  <c>.gt, <c>.pred  (H, W) int64
  <c>.ap3/.tp3/.fp3/.fn3   (3,)  f64  average_precision at [0.5, 0.75, 0.9]
  <c>.ap10/.tp10/...       (10,) f64  at np.arange(0.5, 1.0, 0.05) (thresholds in .th10)
  <c>.aji                  ()    f64  aggregated_jaccard_index
  <c>.iout, <c>.preds      (max(gt),) mask_ious (when max(gt) > 0)
Cellpose's ap/tp/fp/fn arrays are float32; they are stored widened to f64.

Run: /usr/bin/python3 tests/ref/metrics.py --out build/ref
"""
import os
import sys

import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "build", "pydeps"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tifffile  # noqa: E402
from cellpose import metrics  # noqa: E402

from common import out_dir, save  # noqa: E402

GT = [  # (prefix, path) - the C test has the same list
    ("d9", "data/samples/dsb2018_stage1test_fluo/dsbfluo_009_masks.tif"),
    ("b1", "data/samples/bbbc039_u2os_nuclei/bbbc039_001_masks.tif"),
]
TH3 = [0.5, 0.75, 0.9]
TH10 = np.arange(0.5, 1.0, 0.05)


def shifted(g):
    return np.roll(g, (2, 3), axis=(0, 1))


def eroded(g):
    p = np.pad(g, 1)
    keep = ((p[1:-1, 1:-1] == p[:-2, 1:-1]) & (p[1:-1, 1:-1] == p[2:, 1:-1]) &
            (p[1:-1, 1:-1] == p[1:-1, :-2]) & (p[1:-1, 1:-1] == p[1:-1, 2:]))
    return np.where(keep, g, 0)


def merged(g):
    m = g.copy()
    H, W = m.shape
    for y in range(0, H, 5):
        for x in range(W - 1):
            a, b = m[y, x], m[y, x + 1]
            if a and b and a != b:
                m[m == b] = a
                break
    return m


def split(g):
    m = g.copy()
    nxt = int(m.max()) + 1
    for i in range(1, int(g.max()) + 1, 3):
        ys, xs = np.nonzero(g == i)
        if len(xs) == 0:
            continue
        cx = np.median(xs)
        sel = xs > cx
        m[ys[sel], xs[sel]] = nxt
        nxt += 1
    return m


def missing(g):
    m = g.copy()
    m[np.isin(m, np.arange(1, int(g.max()) + 1, 5))] = 0
    return m


def extra(g, seed):
    rng = np.random.default_rng(seed)
    m = g.copy()
    nxt = int(m.max()) + 1
    H, W = m.shape
    for _ in range(20):
        y, x = rng.integers(0, H - 8), rng.integers(0, W - 8)
        sl = m[y:y + 7, x:x + 6]
        sl[sl == 0] = nxt
        nxt += 1
    return m


def gapped(g):
    m = g.copy() * 3  # non-consecutive ids: max label counts, absent ids are misses
    return m


def add(t, name, gt, pred):
    t[name + ".gt"] = torch.from_numpy(gt.astype(np.int64))
    t[name + ".pred"] = torch.from_numpy(pred.astype(np.int64))
    for tag, th in (("3", TH3), ("10", TH10)):
        ap, tp, fp, fn = metrics.average_precision(gt, pred, threshold=th)
        for k, v in (("ap", ap), ("tp", tp), ("fp", fp), ("fn", fn)):
            t[f"{name}.{k}{tag}"] = torch.from_numpy(np.asarray(v, np.float64))
    with np.errstate(all="ignore"):
        aji = metrics.aggregated_jaccard_index([gt], [pred])[0]
    t[name + ".aji"] = torch.tensor(aji, dtype=torch.float64)
    if gt.max() > 0:
        iout, preds = metrics.mask_ious(gt, pred)
        t[name + ".iout"] = torch.from_numpy(iout.astype(np.float64))
        t[name + ".preds"] = torch.from_numpy(preds.astype(np.int64))
    ap, tp, _, _ = metrics.average_precision(gt, pred, threshold=TH3)
    print(f"{name}: max gt {int(gt.max())} max pred {int(pred.max())} tp {tp} ap {ap} aji {aji:.6f}")


def main():
    out = out_dir()
    t = {"th10": torch.from_numpy(np.asarray(TH10, np.float64))}
    for k, (pre, path) in enumerate(GT):
        g = tifffile.imread(os.path.join(REPO, path)).astype(np.int64)
        mix = extra(missing(split(merged(eroded(shifted(g))))), 7 + k)
        for name, p in (("same", g), ("shift", shifted(g)), ("erode", eroded(g)), ("merge", merged(g)),
                        ("split", split(g)), ("miss", missing(g)), ("extra", extra(g, k)), ("mix", mix),
                        ("gap", gapped(g))):
            add(t, f"{pre}_{name}", g, p)
        add(t, f"{pre}_emptypred", g, np.zeros_like(g))
        add(t, f"{pre}_emptygt", np.zeros_like(g), g)
        add(t, f"{pre}_swap", mix, g)  # more predictions than truths
    z = np.zeros((17, 23), np.int64)
    add(t, "bothempty", z, z)
    save("metrics", t, out)


if __name__ == "__main__":
    main()
