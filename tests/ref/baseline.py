"""OpenCV / scipy / Cellpose reference for eval/baseline.c (tests/test_baseline.c).

Nobody here wrote these: cv2 (python3-opencv), scipy.ndimage, cellpose 3.1.1.3.
Where baseline.h deliberately differs from cv2 (float image instead of uint8,
unrounded local mean) the cases are chosen where both must agree, or the
quantity compared is cv2's float64 path. Cases (<c> prefixes; stored as F64 except the I64 block sizes):
  otsu<k>.img (H, W) f32 uint8-valued image; otsu<k>.fg (H, W) i64 =
      cv2.threshold(img_u8, 0, 1, THRESH_BINARY + THRESH_OTSU) (0/1);
      otsu<k>.t () f64 cv2's threshold
  blur<k>.img (H, W) f32; blur<k>.out (H, W) f64 = cv2.GaussianBlur(img f64,
      (0, 0), sigma, borderType=BORDER_REFLECT_101); blur<k>.sigma () f64
  box<k>.img (H, W) f32; box<k>.mean (H, W) f64 = cv2.boxFilter(img f64, -1,
      (B, B), normalize=True, borderType=BORDER_REPLICATE); box<k>.block () i64
  cc<k>.fg (H, W) i64 0/1; cc<k>.cv4 / .cv8 cv2.connectedComponents labels;
      cc<k>.sp4 / .sp8 scipy.ndimage.label labels (cross / 3x3 structure)
  seg.img (H, W) f32: a bundled uint8 DSB image (raw values);
  seg.masks (H, W) i64: cv2 Otsu on the raw uint8 image -> cv2 8-connected
      components -> cellpose.utils.fill_holes_and_remove_small_masks(15)

Run: /usr/bin/python3 tests/ref/baseline.py --out build/ref
"""
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "build", "pydeps"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cv2  # noqa: E402
import safetensors_np  # noqa: E402
import tifffile  # noqa: E402
from cellpose import utils  # noqa: E402
from scipy import ndimage  # noqa: E402

from common import out_dir  # noqa: E402


def bimodal(rng, h, w, lo, hi, frac):
    fg = rng.random((h, w)) < frac
    v = np.where(fg, rng.normal(hi, 20, (h, w)), rng.normal(lo, 15, (h, w)))
    return np.clip(np.rint(v), 0, 255).astype(np.uint8)


def blobs(rng, h, w, n):
    """Smooth blobby uint8 image: bright discs on a dark noisy background."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = rng.normal(30, 8, (h, w))
    for _ in range(n):
        cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(3, 9)
        img += 120 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2.0 * r * r))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def main():
    out = out_dir()
    rng = np.random.default_rng(7)
    t = []
    dsb = tifffile.imread(os.path.join(REPO, "data/samples/dsb2018_stage1test_fluo/dsbfluo_000.tif"))
    otsu_imgs = [bimodal(rng, 37, 53, 60, 170, 0.3), bimodal(rng, 64, 41, 20, 90, 0.6), blobs(rng, 70, 90, 12),
                 dsb[:200, :150].copy(), np.where(rng.random((9, 11)) < 0.5, 10, 200).astype(np.uint8)]
    for k, im in enumerate(otsu_imgs):
        th, fg = cv2.threshold(im, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        t += [(f"otsu{k}.img", im.astype(np.float32)), (f"otsu{k}.fg", fg.astype(np.int64)),
              (f"otsu{k}.t", np.array(th, np.float64))]
    for k, (h, w, sigma) in enumerate([(37, 53, 2.0), (5, 7, 2.0), (40, 31, 1.3), (1, 12, 2.0)]):
        im = rng.random((h, w)).astype(np.float32)
        b = cv2.GaussianBlur(im.astype(np.float64), (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101)
        t += [(f"blur{k}.img", im), (f"blur{k}.out", b), (f"blur{k}.sigma", np.array(sigma, np.float64))]
    for k, (h, w, blk) in enumerate([(37, 53, 5), (20, 30, 51), (64, 41, 11)]):
        im = rng.random((h, w)).astype(np.float32)
        m = cv2.boxFilter(im.astype(np.float64), -1, (blk, blk), normalize=True, borderType=cv2.BORDER_REPLICATE)
        t += [(f"box{k}.img", im), (f"box{k}.mean", m), (f"box{k}.block", np.array(blk, np.int64))]
    for k, (h, w, p) in enumerate([(33, 47, 0.45), (64, 64, 0.6), (1, 30, 0.5)]):
        fg = (rng.random((h, w)) < p).astype(np.uint8)
        _, cv4 = cv2.connectedComponents(fg, connectivity=4)
        _, cv8 = cv2.connectedComponents(fg, connectivity=8)
        sp4, _ = ndimage.label(fg, structure=ndimage.generate_binary_structure(2, 1))
        sp8, _ = ndimage.label(fg, structure=np.ones((3, 3), int))
        t += [(f"cc{k}.fg", fg.astype(np.int64)), (f"cc{k}.cv4", cv4.astype(np.int64)),
              (f"cc{k}.cv8", cv8.astype(np.int64)), (f"cc{k}.sp4", sp4.astype(np.int64)),
              (f"cc{k}.sp8", sp8.astype(np.int64))]
    _, fg = cv2.threshold(dsb, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    _, lab = cv2.connectedComponents(fg, connectivity=8)
    masks = utils.fill_holes_and_remove_small_masks(lab.astype(np.int32), min_size=15)
    t += [("seg.img", dsb.astype(np.float32)), ("seg.masks", masks.astype(np.int64))]
    # everything as float64 (exact for these uint8 values and labels): the C test reads F64
    t = [(k, v) if k.endswith(".block") else (k, np.asarray(v, np.float64)) for k, v in t]
    path = os.path.join(out, "baseline.safetensors")
    safetensors_np.save(path, t, {"op": "baseline", "cv2": cv2.__version__})
    print(f"wrote {path} ({len(t)} tensors)")


if __name__ == "__main__":
    main()
