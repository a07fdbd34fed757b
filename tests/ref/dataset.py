"""Reference for tests/test_dataset.c: the real Cellpose 3.1.1.3 folder reader
(io.get_image_files, io.get_label_files, io.imread) and utils.diameters on
the bundled folder data/samples/dsb2018_stage1test_fluo, plus utils.diameters
on two hand-made label images (no background pixel; an even mask count).

Saved (dataset.safetensors): names (uint8, image file names joined by '\n'),
n, hw [n, 2] int64, img_sum [n] float64, nmasks [n] int64, diam [n] float64,
img0 [H, W] float32, lab0 [H, W] int64, and nobg_* / even_* label cases.

Run from the repo root: /usr/bin/python3 tests/ref/dataset.py --out build/ref
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "build", "pydeps"))
import numpy as np  # noqa: E402
import torch  # noqa: E402

from common import save  # noqa: E402
from cellpose import io, utils  # noqa: E402

FOLDER = "data/samples/dsb2018_stage1test_fluo"


def main():
    names = io.get_image_files(FOLDER, "_masks")
    labels, _ = io.get_label_files(names, "_masks")
    hw, sums, nmasks, diam = [], [], [], []
    for k, (fi, fl) in enumerate(zip(names, labels)):
        img = io.imread(fi)
        lab = io.imread(fl)
        assert img.ndim == 2 and lab.shape == img.shape, fi
        hw.append(img.shape)
        sums.append(float(img.astype(np.float64).sum()))
        md, dall = utils.diameters(lab)
        nmasks.append(len(dall))
        diam.append(float(md))
        if k == 0:
            img0 = img.astype(np.float32)
            lab0 = lab.astype(np.int64)
    # utils.diameters corner cases: no background (counts[1:] drops label 1),
    # an even number of masks (median = mean of the two middle values)
    nobg = np.array([[1, 1, 2, 2, 2], [1, 3, 3, 2, 2], [4, 4, 4, 4, 2]], dtype=np.int64)
    even = np.array([[0, 5, 5, 0, 7], [9, 9, 9, 0, 7], [0, 0, 11, 11, 7]], dtype=np.int64)
    md_nobg, d_nobg = utils.diameters(nobg)
    md_even, d_even = utils.diameters(even)
    joined = "\n".join(os.path.basename(f) for f in names).encode()
    t = torch.tensor
    save("dataset", {
        "names": torch.frombuffer(bytearray(joined), dtype=torch.uint8),
        "n": len(names),
        "hw": t(np.array(hw, dtype=np.int64)),
        "img_sum": t(np.array(sums, dtype=np.float64)),
        "nmasks": t(np.array(nmasks, dtype=np.int64)),
        "diam": t(np.array(diam, dtype=np.float64)),
        "img0": t(img0),
        "lab0": t(lab0),
        "nobg_labels": t(nobg), "nobg_n": len(d_nobg), "nobg_diam": t(np.array([md_nobg], dtype=np.float64)),
        "even_labels": t(even), "even_n": len(d_even), "even_diam": t(np.array([md_even], dtype=np.float64)),
    })


if __name__ == "__main__":
    main()
