"""Reference for tests/test_masks_pipeline.c: the REAL Cellpose 3.1.1.3
dynamics.compute_masks from flows to final masks, all steps at once (Euler
integration, mask assembly, flow-error removal at 0.4, hole filling and
min_size 15), on network-like flows: 5 x the flows of bundled real label
images plus seeded noise, and a noisy cellprob. Debian's torch 1.13 refuses
the int32 index tensor that get_masks_torch builds from p_final.int(), so
that one call gets the same positions widened to int64 (Cellpose's
arithmetic is unchanged)."""
import os
import sys

import numpy as np
import tifffile
import torch

from common import out_dir, save

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "build", "pydeps"))
from cellpose import dynamics  # noqa: E402

_orig = dynamics.get_masks_torch
dynamics.get_masks_torch = lambda pt, *a, **k: _orig(pt.long(), *a, **k)

CASES = [("dsb2018_stage1test_fluo", "dsbfluo_000", 1), ("bbbc039_u2os_nuclei", "bbbc039_001", 2),
         ("dsb2018_stage1test_fluo", "dsbfluo_009", 3)]


def main():
    out = out_dir()
    res = {"n_cases": len(CASES)}
    for k, (folder, name, seed) in enumerate(CASES):
        lab = tifffile.imread(os.path.join(REPO, "data/samples", folder, name + "_masks.tif")).astype(np.int64)
        rng = np.random.default_rng(seed)
        flows = dynamics.masks_to_flows(lab, device=torch.device("cpu"))
        dP = (5 * flows + rng.normal(0, 0.25, flows.shape)).astype(np.float32)
        cellprob = (4.0 * (lab > 0) - 2.0 + rng.normal(0, 1.5, lab.shape)).astype(np.float32)
        masks = dynamics.compute_masks(dP, cellprob, niter=200, cellprob_threshold=0.0, flow_threshold=0.4,
                                       min_size=15, max_size_fraction=0.4, device=torch.device("cpu"))
        res[f"c{k}.dP"] = torch.from_numpy(dP)
        res[f"c{k}.cellprob"] = torch.from_numpy(cellprob)
        res[f"c{k}.masks"] = torch.from_numpy(masks.astype(np.int64))
        print(f"{name}: {lab.max()} true masks, Cellpose finds {masks.max()}")
    save("masks_pipeline", res, out)


if __name__ == "__main__":
    main()
