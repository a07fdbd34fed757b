"""Reference for infer/dynamics.c: Cellpose v3.1.1.3's own CPU dynamics.

For each case it builds network-like outputs from real label images
(cellpose.dynamics.masks_to_flows gives perfect unit flows; dP = 5*mu plus
seeded Gaussian noise, cellprob = 2*(labels>0)-1 plus noise), then runs the
real Cellpose CPU path:
  pos   = follow_flows(dP * fg / 5., inds, niter, interp=True, device=cpu)
          (the numba map_coordinates branch of steps_interp, float32)
  masks = compute_masks(dP, cellprob, niter, cellprob_threshold,
                        flow_threshold=0, min_size=-1, device=cpu)
          (follow_flows + get_masks_torch; no flow-error removal, no hole filling)
and saves inputs, final positions and masks. It also saves torch's CPU
argsort (not stable) on tie-heavy int32 keys, the niter diameter rule, and the
time Cellpose takes on the 1022x1024 case.

Run: PYTHONPATH=build/pydeps /usr/bin/python3 tests/ref/dynamics.py --out build/ref
"""
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "build/pydeps"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import tifffile  # noqa: E402
import torch  # noqa: E402

from common import out_dir, save  # noqa: E402
from cellpose import dynamics  # noqa: E402

CPU = torch.device("cpu")


def sample(name):
    for sub in os.listdir(os.path.join(REPO, "data/samples")):
        p = os.path.join(REPO, "data/samples", sub, name + "_masks.tif")
        if os.path.exists(p):
            return tifffile.imread(p).astype(np.int64)
    raise FileNotFoundError(name)


def synth():
    """131x97: a giant label (> 40% of the image, removed by max_size_fraction)
    above a Voronoi tiling of 12 cells."""
    rng = np.random.default_rng(7)
    H, W = 131, 97
    lab = np.zeros((H, W), np.int64)
    lab[2:80, 3:95] = 1
    pts = np.stack([rng.integers(84, 129, 12), rng.integers(2, 95, 12)], 1)
    yy, xx = np.mgrid[84:129, 2:95]
    d = (yy[..., None] - pts[:, 0]) ** 2 + (xx[..., None] - pts[:, 1]) ** 2
    lab[84:129, 2:95] = 2 + d.argmin(-1)
    return lab


def niter_rule(diameter, diam_mean=30.0):
    """models.py: rescale = diam_mean / diameter; niter0 = 1 / rescale * 200;
    follow_flows: np.uint32(niter)."""
    rescale = diam_mean / diameter
    return int(np.uint32(1 / rescale * 200))


def compute_masks(dP, cellprob, niter, thr):
    """dynamics.compute_masks with flow_threshold 0 and min_size -1, step by
    step: Debian's torch 1.13 refuses the int32 index tensor that
    get_masks_torch builds from p_final.int(), so the truncated positions are
    widened to int64 (same values) before the call."""
    fg = cellprob > thr
    if not fg.sum():
        return np.zeros(cellprob.shape, np.uint16)
    inds = np.nonzero(fg)
    p = dynamics.follow_flows(dP * fg / 5., inds=inds, niter=niter, interp=True, device=CPU)
    p = torch.from_numpy(p).to(CPU, dtype=torch.int).long()
    return dynamics.get_masks_torch(p, inds, dP.shape[1:], max_size_fraction=0.4)


def case(name, lab, seed, sigma_flow, sigma_prob, thr, niter, timed=False):
    rng = np.random.default_rng(seed)
    mu = dynamics.masks_to_flows(lab, device=CPU)
    dP = (5.0 * mu + sigma_flow * rng.standard_normal(mu.shape)).astype(np.float32)
    cellprob = (2.0 * (lab > 0) - 1.0 + sigma_prob * rng.standard_normal(lab.shape)).astype(np.float32)
    fg = cellprob > thr
    inds = np.nonzero(fg)
    t0 = time.perf_counter()
    pos = dynamics.follow_flows(dP * fg / 5., inds=inds, niter=niter, interp=True, device=CPU)
    t1 = time.perf_counter()
    masks = compute_masks(dP, cellprob, niter, thr)
    t2 = time.perf_counter()
    assert pos.dtype == np.float32
    print(f"{name}: {lab.shape} fg {len(inds[0])} niter {niter} labels {masks.max()} "
          f"follow {t1 - t0:.2f} s compute_masks {t2 - t1:.2f} s")
    out = {
        name + "/dP": torch.from_numpy(dP),
        name + "/cellprob": torch.from_numpy(cellprob),
        name + "/thr": torch.tensor([thr], dtype=torch.float32),
        name + "/niter": int(niter),
        name + "/pos": torch.from_numpy(np.ascontiguousarray(pos)),
        name + "/masks": torch.from_numpy(masks.astype(np.int64)),
    }
    if timed:  # compute_masks = follow_flows + get_masks_torch (the whole CPU path timed)
        out[name + "/t_follow_us"] = int((t1 - t0) * 1e6)
        out[name + "/t_compute_us"] = int((t2 - t1) * 1e6)
    return out


def main():
    out = out_dir()
    t = {}
    t.update(case("dsbfluo", sample("dsbfluo_000"), 1, 1.0, 0.7, 0.0, niter_rule(25.1)))
    t.update(case("bbbc039", sample("bbbc039_000"), 2, 1.5, 0.7, 0.0, 200))
    t.update(case("usiigaci", sample("usiigaci_000"), 3, 1.0, 0.5, 0.0, 200, timed=True))
    t.update(case("synth", synth(), 4, 2.0, 1.0, 0.5, 137))
    # torch CPU argsort (get_masks_torch's seed order): not stable for n > 16
    rng = np.random.default_rng(11)
    for n in (5, 17, 40, 300, 5000, 70000):
        keys = rng.integers(11, 11 + max(3, n // 20), n).astype(np.int32)
        t[f"sort{n}/keys"] = torch.from_numpy(keys)
        t[f"sort{n}/order"] = torch.from_numpy(keys).argsort()
    # niter diameter rule
    diams = np.array([30.0, 17.0, 25.1, 12.3, 45.7, 7.9], np.float64)
    t["niter/diam"] = torch.from_numpy(diams)
    t["niter/niter"] = torch.tensor([niter_rule(d) for d in diams], dtype=torch.int64)
    save("dynamics", t, out)


if __name__ == "__main__":
    main()
