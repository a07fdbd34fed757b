"""Reference for infer/tiles.c: the real Cellpose 3.1.1.3 tiling.

For several image sizes it runs transforms.get_pad_yx, make_tiles,
_taper_mask, average_tiles and the whole core.run_net loop with a fake
network (a float32 per-pixel function of the tile and of the position inside
the tile, so overlapping tiles disagree and the blending weights matter), and
cv2.resize(INTER_LINEAR) on a bundled image for the resize comparison.

Inputs are crops of the bundled 1022x1024 phase-contrast image scaled to
[0, 1] (channel 0) and a ramp (channel 1). Saved per case k:
  k_in [2, H, W] f32, k_pads [4] i64 (ypad1, ypad2, xpad1, xpad2),
  k_ystart [ny] i64, k_xstart [nx] i64, k_by, k_bx (ints),
  k_taper [by, bx] f32 (the float64 mask rounded), k_avg [3, Hp, Wp]
  (average_tiles of the fake net's tile outputs), k_run [3, H, W] (run_net),
  k_aug [3, H, W] (run_net with augment=True: flipped, half-overlapping tiles).
Run: /usr/bin/python3 tests/ref/tiles.py --out build/ref
"""
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "build/pydeps"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import cv2  # noqa: E402
from common import save  # noqa: E402
from cellpose import core, transforms  # noqa: E402

SIZES = [(1, 1), (37, 53), (256, 256), (520, 696), (1022, 1024)]
BSIZE = 224


def fake_np(x):
    """y[n, c, r, s] = x0 * (1 + c) + (0.01 r - 0.02 s) + 0.1 c + x1 * 0.5, float32."""
    n, _, ly, lx = x.shape
    r = np.arange(ly, dtype=np.float32)[:, None]
    s = np.arange(lx, dtype=np.float32)[None, :]
    ramp = np.float32(0.01) * r - np.float32(0.02) * s
    y = np.zeros((n, 3, ly, lx), np.float32)
    for c in range(3):
        y[:, c] = x[:, 0] * np.float32(1 + c) + ramp + np.float32(0.1 * c) + x[:, 1] * np.float32(0.5)
    return y


class FakeNet(torch.nn.Module):
    """What core._forward needs: nout, mkldnn, device, eval(), net(X) -> (y, style)."""
    nout = 3
    mkldnn = False
    device = torch.device("cpu")

    def forward(self, X):
        y = torch.from_numpy(fake_np(X.numpy()))
        return y, torch.ones((X.shape[0], 256))


def make_input(img, H, W):
    x = np.zeros((2, H, W), np.float32)
    x[0] = img[:H, :W]
    x[1] = (np.arange(W, dtype=np.float32)[None, :] / np.float32(W)) - np.float32(0.25)
    return x


def main():
    from common import out_dir
    out = out_dir()
    path = os.path.join(REPO, "data/samples/usiigaci_phase_contrast/usiigaci_000.tif")
    raw = cv2.imread(path, cv2.IMREAD_UNCHANGED).astype(np.float32)
    img = (raw - raw.min()) / (raw.max() - raw.min())
    t = {}
    for k, (H, W) in enumerate(SIZES):
        x = make_input(img, H, W)
        pads = transforms.get_pad_yx(H, W)
        xp = np.pad(x, [[0, 0], [pads[0], pads[1]], [pads[2], pads[3]]], mode="constant")
        IMG, ysub, xsub, Lyt, Lxt = transforms.make_tiles(xp, bsize=BSIZE, tile_overlap=0.1)
        ny, nx, _, by, bx = IMG.shape
        ytl = fake_np(IMG.reshape(ny * nx, 2, by, bx))
        avg = transforms.average_tiles(ytl, ysub, xsub, Lyt, Lxt)
        yf, _ = core.run_net(FakeNet(), x.transpose(1, 2, 0)[None], batch_size=8, bsize=BSIZE)
        ya, _ = core.run_net(FakeNet(), x.transpose(1, 2, 0)[None], batch_size=8, bsize=BSIZE, augment=True)
        ystart = np.array([ysub[j * nx][0] for j in range(ny)], np.int64)
        xstart = np.array([xsub[i][0] for i in range(nx)], np.int64)
        p = f"c{k}_"
        t[p + "in"] = torch.from_numpy(x)
        t[p + "pads"] = torch.tensor(pads, dtype=torch.int64)
        t[p + "ystart"] = torch.from_numpy(ystart)
        t[p + "xstart"] = torch.from_numpy(xstart)
        t[p + "by"], t[p + "bx"] = int(by), int(bx)
        t[p + "taper"] = torch.from_numpy(transforms._taper_mask(ly=by, lx=bx).astype(np.float32))
        t[p + "avg"] = torch.from_numpy(avg.astype(np.float32))
        t[p + "run"] = torch.from_numpy(np.ascontiguousarray(yf[0].transpose(2, 0, 1)))
        t[p + "aug"] = torch.from_numpy(np.ascontiguousarray(ya[0].transpose(2, 0, 1)))
        print(f"case {k}: {H}x{W} pads {pads} tiles {ny}x{nx} of {by}x{bx}")
    # extra tapers: tiles larger than 224 (B = max(224, ly, lx)), odd sides
    for name, (ly, lx) in {"taper_300x260": (300, 260), "taper_37x224": (37, 224)}.items():
        t[name] = torch.from_numpy(transforms._taper_mask(ly=ly, lx=lx).astype(np.float32))
    # resize vs cv2.resize INTER_LINEAR (float32) on a bundled 8-bit image
    r = cv2.imread(os.path.join(REPO, "data/samples/dsb2018_stage1test_fluo/dsbfluo_000.tif"),
                   cv2.IMREAD_UNCHANGED).astype(np.float32)
    if r.ndim == 3:
        r = r[..., 0].copy()
    r = r / np.float32(255)
    t["rs_in"] = torch.from_numpy(r)
    for name, (ho, wo) in {"up": (int(r.shape[0] * 1.37), int(r.shape[1] * 1.37)),
                           "down": (int(r.shape[0] * 0.6), int(r.shape[1] * 0.6)),
                           "half": (r.shape[0] // 2, r.shape[1] // 2),
                           "odd": (r.shape[0] + 17, r.shape[1] - 23)}.items():
        t["rs_" + name] = torch.from_numpy(cv2.resize(r, (wo, ho), interpolation=cv2.INTER_LINEAR))
    save("tiles", t, out)


if __name__ == "__main__":
    main()
