"""`infer` next to the real Cellpose 3.1.1.3 on the same image, weights,
machine and thread count, time per stage (issue 6's figure).

Weights: a Cellpose-size CPnet (nbase [2, 32, 64, 128, 256]) with PyTorch's
default random init (torch seed 0), written as model.bin; diam_labels =
diam_mean, so no rescale. Random weights find no masks, so the dynamics time
of that run is small on both sides; with --model RUN/model.bin (e.g. make
run's trained model) the masks are real. Image: the bundled 1022 x 1024
phase-contrast image (--image to change). Each side runs --repeat times, the
fastest run is reported.

Stages. Ours: the JSON line's seconds (read+normalize, network = tiling +
net + blending + resize back, dynamics = Euler + mask assembly, cleanup =
flow-error removal + fill holes + min size, total = whole program incl.
model load and writing the masks). Cellpose: normalize_img, _run_net,
_compute_masks (which does dynamics and cleanup together), total = eval().

Usage: /usr/bin/python3 bench/infer_vs_cellpose.py [--threads N] [--model M]"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "ref"))
sys.path.insert(0, os.path.join(ROOT, "build", "pydeps"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--model", default=None)
    ap.add_argument("--image", default=os.path.join(ROOT, "data/samples/usiigaci_phase_contrast/usiigaci_000.tif"))
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--bin", default=os.environ.get("CP_BIN", os.path.join(ROOT, "bin")))
    a = ap.parse_args()
    import numpy as np
    import tifffile
    import torch
    torch.set_num_threads(a.threads)
    import cellpose_model
    from cellpose import resnet_torch, transforms
    from safetensors.torch import save_file
    tmp = tempfile.mkdtemp(prefix="cp_bench_infer_")
    model = a.model
    if model is None:
        torch.manual_seed(0)
        net = resnet_torch.CPnet([2, 32, 64, 128, 256], 3, 3, mkldnn=False, diam_mean=30.0)
        net.diam_labels.data[:] = 30.0
        model = os.path.join(tmp, "model.bin")
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, model)
    img = tifffile.imread(a.image)
    ours = []
    for _ in range(a.repeat):
        r = subprocess.run([os.path.join(a.bin, "infer"), model, a.image, "--out", tmp, "--threads", str(a.threads)],
                           capture_output=True, text=True, check=True)
        ours.append(json.loads(r.stdout))
    best = min(ours, key=lambda d: d["seconds"]["total"])
    m = cellpose_model.load(model)
    runs = []
    for _ in range(a.repeat):
        t = {}
        t0 = time.perf_counter()
        with torch.no_grad():
            masks, _, _ = m.eval(img, channels=[0, 0])
        t["total"] = time.perf_counter() - t0
        x = transforms.convert_image(img, [0, 0], nchan=2)[np.newaxis]
        t0 = time.perf_counter()
        x = transforms.normalize_img(x)
        t["normalize"] = time.perf_counter() - t0
        rescale = m.diam_mean / m.diam_labels
        t0 = time.perf_counter()
        with torch.no_grad():
            dP, cellprob, _ = m._run_net(x, rescale=rescale)
        t["network"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        m._compute_masks(x.shape, dP, cellprob, flow_threshold=0.4, cellprob_threshold=0.0, min_size=15,
                         max_size_fraction=0.4, niter=int(1 / rescale * 200))
        t["masks"] = time.perf_counter() - t0
        runs.append(t)
    cp = min(runs, key=lambda d: d["total"])
    s = best["seconds"]
    rows = [("read + normalize", s["read_normalize"], cp["normalize"]), ("network (tiles, net, blend)", s["network"],
            cp["network"]), ("dynamics + cleanup", s["dynamics"] + s["cleanup"], cp["masks"]),
            ("total (whole program / eval())", s["total"], cp["total"])]
    print(f"image {os.path.basename(a.image)} {img.shape}, model {'random cyto-size CPnet' if a.model is None else a.model}, "
          f"threads {a.threads}, cpu: {open('/proc/cpuinfo').read().split('model name')[1].split(':')[1].splitlines()[0].strip()}")
    print(f"masks: ours {best['masks']}, Cellpose {int(masks.max())}")
    print(f"{'stage':34s} {'ours s':>9s} {'Cellpose s':>11s} {'ratio':>7s}")
    for name, o, c in rows:
        print(f"{name:34s} {o:9.3f} {c:11.3f} {c / o if o > 0 else float('nan'):7.2f}")
    print("ratio = Cellpose time / ours: > 1 means cellpose.c is faster")


if __name__ == "__main__":
    main()
