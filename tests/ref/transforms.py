"""Cellpose 3.1.1.3 reference for train/transforms.c (tests/test_transforms.c).

Runs the real Cellpose functions, on the bundled sample images:
  channels: transforms.convert_image(img, channels) then .transpose(2, 0, 1),
            exactly train._reshape_norm with channels given;
  norm:     transforms.normalize_img(x, normalize=True, axis=0) on that
            (train._reshape_norm with normalize on; eval uses the same
            normalize99 per channel);
  percentile: np.percentile (numpy's default 'linear') on odd arrays;
  lr:       the LR array of train.train_seg (lines 423-432 of
            cellpose/train.py v3.1.1.3, transcribed below; the script checks
            that those lines are still verbatim in the installed source).
Cases (name: image, channels):
  g8     dsbfluo_000 uint8 519x253            [0, 0]
  g8c    dsbfluo_004 uint8 519x162            [2, 3] (1 channel: ignored)
  g16    bbbc039_000 uint16 520x696           [0, 0]
  phase  usiigaci_000 uint16 1022x1024        [0, 0]
  rgb*   dsbfluo_001/002/006 stacked uint8 256x256x3, [0,0] [2,3] [3,0] [1,2]
  f4*    float32 520x696x4 (bbbc039_000..002 scaled by odd factors + a
         ramp): [0,0] (float mean order matters), [4,1]
  const  uint16 64x80 all 1000               [0, 0] (left untouched by v3)
  flat   uint16 64x80 zeros with 20 ones     [0, 0] (p99 - p1 <= 1e-3 -> 0)
  big    usiigaci_000 tiled to 3401x3307 (11.2M px > 224^3: subsampled
         percentiles): img[y % 1022, x % 1024]; only the normalized channel
         0 is saved (the C test rebuilds the image).

Run: /usr/bin/python3 tests/ref/transforms.py --out build/ref
"""
import inspect
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "build", "pydeps"))

import tifffile  # noqa: E402
from cellpose import train, transforms  # noqa: E402

from common import out_dir, save  # noqa: E402

SAMPLES = os.path.join(REPO, "data", "samples")


def sample(folder, name):
    return tifffile.imread(os.path.join(SAMPLES, folder, name + ".tif"))


def lr_schedule(learning_rate, n_epochs):
    """Transcription of cellpose/train.py train_seg lines 423-432 (v3.1.1.3)."""
    LR = np.linspace(0, learning_rate, 10)
    LR = np.append(LR, learning_rate * np.ones(max(0, n_epochs - 10)))
    if n_epochs > 300:
        LR = LR[:-100]
        for i in range(10):
            LR = np.append(LR, LR[-1] / 2 * np.ones(10))
    elif n_epochs > 100:
        LR = LR[:-50]
        for i in range(10):
            LR = np.append(LR, LR[-1] / 2 * np.ones(5))
    return LR


def check_transcription():
    src = inspect.getsource(train.train_seg)
    for line in ["LR = np.linspace(0, learning_rate, 10)",
                 "LR = np.append(LR, learning_rate * np.ones(max(0, n_epochs - 10)))",
                 "if n_epochs > 300:", "LR = LR[:-100]",
                 "LR = np.append(LR, LR[-1] / 2 * np.ones(10))", "elif n_epochs > 100:",
                 "LR = LR[:-50]", "LR = np.append(LR, LR[-1] / 2 * np.ones(5))",
                 'param_group["lr"] = LR[iepoch]']:
        assert line in src, "train_seg changed: " + line


def prepare(img, channels):
    """train._reshape_norm(data, channels=channels, normalize_params={'normalize': True})."""
    x = transforms.convert_image(img, channels=channels, channel_axis=None)
    x = x.transpose(2, 0, 1)
    sel = x.copy()
    norm = transforms.normalize_img(x, normalize={"normalize": True}, axis=0)
    return sel, norm


def image_cases():
    d1 = sample("dsb2018_stage1test_fluo", "dsbfluo_001")
    d2 = sample("dsb2018_stage1test_fluo", "dsbfluo_002")
    d6 = sample("dsb2018_stage1test_fluo", "dsbfluo_006")
    rgb = np.stack([d1, d2, d6], axis=-1)
    b = [sample("bbbc039_u2os_nuclei", "bbbc039_%03d" % i).astype(np.float32) for i in range(3)]
    ramp = (np.arange(520 * 696, dtype=np.float32).reshape(520, 696) * np.float32(0.013)) % np.float32(97.3)
    f4 = np.stack([b[0] * np.float32(0.371), b[1] * np.float32(1.913), b[2] * np.float32(0.0773), ramp], -1)
    const = np.full((64, 80), 1000, np.uint16)
    flat = np.zeros((64, 80), np.uint16)
    flat.reshape(-1)[::256] = 1  # 20 ones in 5120 pixels: p99 = 0
    return [
        ("g8", sample("dsb2018_stage1test_fluo", "dsbfluo_000"), [0, 0]),
        ("g8c", sample("dsb2018_stage1test_fluo", "dsbfluo_004"), [2, 3]),
        ("g16", sample("bbbc039_u2os_nuclei", "bbbc039_000"), [0, 0]),
        ("phase", sample("usiigaci_phase_contrast", "usiigaci_000"), [0, 0]),
        ("rgb00", rgb, [0, 0]), ("rgb23", rgb, [2, 3]), ("rgb30", rgb, [3, 0]), ("rgb12", rgb, [1, 2]),
        ("f400", f4, [0, 0]), ("f441", f4, [4, 1]),
        ("const", const, [0, 0]), ("flat", flat, [0, 0]),
    ]


def big_case(tensors):
    ph = sample("usiigaci_phase_contrast", "usiigaci_000")
    H, W = 3401, 3307
    img = ph[np.arange(H)[:, None] % ph.shape[0], np.arange(W)[None, :] % ph.shape[1]]
    assert img.size > 224 ** 3
    sel, norm = prepare(img, [0, 0])
    x = sel[0]
    sub = x[::H // 224, ::W // 224]
    tensors["big_H"], tensors["big_W"] = H, W
    tensors["big_norm0"] = norm[0]
    tensors["big_p_full"] = np.array([np.percentile(x, 1), np.percentile(x, 99)])
    tensors["big_p_sub"] = np.array([np.percentile(sub, 1), np.percentile(sub, 99)])
    print("big: full-image percentiles", tensors["big_p_full"], "subsampled", tensors["big_p_sub"])


def percentile_cases(tensors):
    rng = np.random.default_rng(11)
    ps = np.array([0.0, 1.0, 99.0, 100.0, 50.0, 33.3, 2.5, 97.5, 0.1, 99.9])
    arrays = [
        rng.standard_normal(1).astype(np.float32),
        rng.standard_normal(2).astype(np.float32),
        (rng.standard_normal(1001) * 1e3).astype(np.float32),
        rng.integers(0, 7, 4097).astype(np.float32),                      # many ties
        (rng.random(777) * 1e-3 + 1e4).astype(np.float32),               # b - a rounds in float32
        np.concatenate([-(rng.random(300) ** 9), rng.random(500) * 1e30]).astype(np.float32),
        # geometric: sorted neighbours differ in exponent, so b - a rounds in float32
        ((1.37 ** np.arange(211)) * (1 + rng.random(211))).astype(np.float32),
        # ratio >= 3.1 (no Sterbenz): b - a always rounds; n - 1 = 59 odd -> p 50 has gamma 0.5
        ((3.1 ** np.arange(60)) * (1 + rng.random(60))).astype(np.float32),
        np.array([3e7, 1.2345678e-3], np.float32),
    ]
    tensors["pct_count"] = len(arrays)
    tensors["pct_p"] = ps
    for k, a in enumerate(arrays):
        tensors["pct%d_x" % k] = a
        tensors["pct%d_out" % k] = np.array([np.percentile(a, p) for p in ps], dtype=np.float64)
        assert np.percentile(a, 1).dtype == np.float64


def main():
    out = out_dir()
    check_transcription()
    tensors = {}
    cases = image_cases()
    for name, img, ch in cases:
        sel, norm = prepare(img, ch)
        tensors[name + "_img"] = np.ascontiguousarray(img)  # HW or HWC, native dtype
        tensors[name + "_ch"] = np.array(ch, np.int64)
        tensors[name + "_sel"] = np.ascontiguousarray(sel, np.float32)
        tensors[name + "_norm"] = np.ascontiguousarray(norm, np.float32)
    big_case(tensors)
    percentile_cases(tensors)
    epochs = [1, 5, 10, 11, 50, 100, 101, 150, 300, 301, 500, 2000]
    lrs = [0.005, 0.2, 0.1, 1e-5]
    tensors["lr_epochs"] = np.array(epochs, np.int64)
    tensors["lr_rates"] = np.array(lrs, np.float64)
    for i, lr in enumerate(lrs):
        for n in epochs:
            LR = lr_schedule(lr, n)
            assert len(LR) >= n and LR[0] == 0
            tensors["lr_%d_%d" % (i, n)] = LR[:n].astype(np.float64)
    np_items = {}
    for k, v in tensors.items():
        np_items[k] = v if isinstance(v, int) else _Arr(np.asarray(v))
    save("transforms", np_items, out)


class _Arr:
    """common.save wants torch-like tensors: give numpy arrays that interface."""

    def __init__(self, a):
        self.a = a

    def detach(self):
        return self

    def contiguous(self):
        return self

    def cpu(self):
        return self

    def numpy(self):
        return np.ascontiguousarray(self.a)


if __name__ == "__main__":
    main()
