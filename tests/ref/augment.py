"""Reference for train/augment.c: the real Cellpose 3.1.1.3
transforms.random_rotate_and_resize on a bundled real image and its flows.

Input: data/samples/dsb2018_stage1test_fluo/dsbfluo_000.tif (519 x 253, odd
height, narrower than the crop once scaled by 0.6) normalised with Cellpose's
normalize99, a second channel (the image upside down, so that the channels
differ), and labels [mask ids, dY, dX] with the flows from
cellpose.dynamics.masks_to_flows (CPU path). Channel 0 holds the mask ids
rather than Cellpose's binary cellprob: random_rotate_and_resize treats it the
same way (INTER_NEAREST), and ids make every nearest-neighbour choice visible.

For each parameter set the real function is called with np.random.rand
monkey-patched to return the uniforms that produce the wanted parameters
(flip, theta, scale, dxy; scale_range 1, no rescale), and
cv2.getAffineTransform wrapped to record Cellpose's matrix M. Saved: inputs,
the parameters as Cellpose used them (theta, scale[n], dxy as computed by the
function's own formula), M, and the outputs imgi[0], lbl[0].

Run: /usr/bin/python3 tests/ref/augment.py --out build/ref
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "build", "pydeps"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import tifffile  # noqa: E402
import torch  # noqa: E402
import cv2  # noqa: E402

from common import save, out_dir  # noqa: E402
import cellpose.dynamics  # noqa: E402
import cellpose.transforms as T  # noqa: E402

BSIZE = 224
SCALE_RANGE = 1.0
# (flip, theta, scale, u_dx, u_dy): scale = (1 - 0.5) + 1.0 * u_scale
SETS = [
    (0, 0.0, 1.0, 0.5, 0.5),    # centred crop, no rotation
    (1, 0.0, 1.0, 0.2, 0.8),    # flip only
    (0, 0.7, 0.6, 0.3, 0.9),    # rotate + shrink (x narrower than the crop)
    (1, 0.7, 1.4, 0.0, 0.999),  # flip + rotate + zoom, extreme offsets
    (0, np.pi / 2, 1.4, 0.75, 0.25),
    (1, np.pi / 2, 0.6, 0.5, 0.1),
    (1, 4.0, 1.0, 0.65, 0.35),
    (0, 0.0, 1.0, 1.0, 1.0),    # identity: crop at (0, 0), integer source pixels
]


class FakeRand:
    """Stands in for np.random.rand: returns the queued uniforms in order."""

    def __init__(self, values):
        self.values = list(values)

    def __call__(self, *shape):
        if not shape:
            return self.values.pop(0)
        n = int(np.prod(shape))
        out = np.array(self.values[:n], dtype=np.float64).reshape(shape)
        del self.values[:n]
        return out


def main():
    out = out_dir()
    d = os.path.join(ROOT, "data", "samples", "dsb2018_stage1test_fluo")
    raw = tifffile.imread(os.path.join(d, "dsbfluo_000.tif")).astype(np.float32)
    masks = tifffile.imread(os.path.join(d, "dsbfluo_000_masks.tif")).astype(np.int64)
    if raw.ndim == 3:
        raw = raw[..., 0] if raw.shape[-1] <= 4 else raw[0]
    img0 = T.normalize99(raw).astype(np.float32)
    img = np.stack([img0, img0[::-1].copy()]).astype(np.float32)          # [2, h, w]
    mu = cellpose.dynamics.masks_to_flows(masks, device=torch.device("cpu"))  # [2, h, w] (dY, dX)
    lbl = np.concatenate([masks[None].astype(np.float32), mu.astype(np.float32)])  # [3, h, w]
    h, w = masks.shape

    tensors = {"img": torch.from_numpy(img), "lbl": torch.from_numpy(lbl), "C": 2, "h": h, "w": w,
               "bsize": BSIZE, "nsets": len(SETS)}
    real_rand, real_gat = np.random.rand, cv2.getAffineTransform
    for k, (flip, theta, scale, ux, uy) in enumerate(SETS):
        u_scale = (scale - (1 - SCALE_RANGE / 2)) / SCALE_RANGE
        rec = {}

        def gat(p1, p2):
            rec["M"] = real_gat(p1, p2)
            return rec["M"]

        np.random.rand = FakeRand([0.9 if flip else 0.1, theta / (2 * np.pi), u_scale, ux, uy])
        cv2.getAffineTransform = gat
        try:
            imgi, lbli, sc = T.random_rotate_and_resize([img.copy()], Y=[lbl.copy()], scale_range=SCALE_RANGE,
                                                        xy=(BSIZE, BSIZE), do_flip=True)
        finally:
            np.random.rand, cv2.getAffineTransform = real_rand, real_gat
        # the parameters exactly as the function formed them
        th = (theta / (2 * np.pi)) * np.pi * 2
        s = sc[0]
        dxy = (np.array([ux, uy]) - 0.5) * np.maximum(0, np.array([w * s - BSIZE, h * s - BSIZE]))
        tensors[f"p{k}_flip"] = int(flip)
        tensors[f"p{k}_theta"] = torch.tensor([th], dtype=torch.float32)
        tensors[f"p{k}_scale"] = torch.tensor([s], dtype=torch.float32)
        tensors[f"p{k}_dxy"] = torch.tensor(dxy, dtype=torch.float32)
        tensors[f"p{k}_M"] = torch.tensor(rec["M"], dtype=torch.float32)
        tensors[f"p{k}_img"] = torch.from_numpy(np.ascontiguousarray(imgi[0]))
        tensors[f"p{k}_lbl"] = torch.from_numpy(np.ascontiguousarray(lbli[0]))
        print(f"set {k}: flip {flip} theta {th:.4f} scale {s:.4f} dxy ({dxy[0]:.2f}, {dxy[1]:.2f})")
    save("augment", tensors, out)


if __name__ == "__main__":
    main()
