"""The whole `infer` pipeline against the real Cellpose 3.1.1.3 with identical
weights: a small CPnet trained by `train` on the bundled DSB2018 nuclei is
loaded from model.bin into Cellpose's CellposeModel (safetensors ->
load_state_dict, diam_mean/diam_labels from the file as Cellpose reads them)
and both segment three real bundled images of different sizes with default
parameters (rescale diam_mean / diam_labels, 224-px tiles, flow threshold 0.4,
min size 15), then once more with --augment on one image.

Cellpose's network runs in PyTorch (oneDNN when available), ours in our
kernels, so the flows may differ in the last float bits; the masks must still
match: every mask paired one to one at IoU >= 0.5 (Cellpose's AP@0.5 of ours
against theirs = 1.0), and the pixel agreement (same label after matching) is
printed. How the weights get into Cellpose (and the two harness adaptations:
int64 indices for Debian's torch, the style padded to 256 for a net whose last
level is 64 wide to keep this test's training short) is in
tests/ref/cellpose_model.py."""
import json
import os

import numpy as np
import pytest
import tifffile
from conftest import ROOT, run_prog

CFG = os.path.join(ROOT, "tests", "data", "parity_nuclei.yaml")
DATA = os.path.join(ROOT, "data", "samples")
IMAGES = ["bbbc039_u2os_nuclei/bbbc039_000.tif", "dsb2018_stage1test_fluo/dsbfluo_000.tif",
          "dsb2018_stage1test_fluo/dsbfluo_022.tif", "dsb2018_stage1test_fluo/dsbfluo_027.tif"]
# phase contrast seen by a fluorescence-nuclei model: flows with no clear
# sinks, where Cellpose's own masks change under 1e-5 noise on its flows
CHAOTIC = "usiigaci_phase_contrast/usiigaci_000.tif"


@pytest.fixture(scope="module")
def model(bindir, tmp_path_factory):
    d = tmp_path_factory.mktemp("parity")
    r = run_prog(bindir, "train", "--deterministic", "--seed", "3", "--config", CFG, "--data",
                 os.path.join(DATA, "dsb2018_stage1test_fluo"), "--out", str(d / "run"))
    assert r.returncode == 0, r.stderr
    return str(d / "run" / "model.bin")


def _cellpose_model(model_bin):
    import torch
    import cellpose_model  # tests/ref/cellpose_model.py
    return cellpose_model.load(model_bin), torch


def _agreement(ours, theirs):
    """Cellpose's AP@0.5 of ours vs theirs, and the fraction of pixels with the
    same label after mapping our labels onto theirs by the IoU matching."""
    from cellpose import metrics
    ap, tp, fp, fn = metrics.average_precision([theirs.astype(np.int32)], [ours.astype(np.int32)], threshold=[0.5])
    iou = metrics._intersection_over_union(theirs.astype(np.int32), ours.astype(np.int32))
    mapped = np.zeros(int(ours.max()) + 1, np.int64)
    for j in range(1, iou.shape[1]):
        i = int(np.argmax(iou[1:, j])) + 1 if iou.shape[0] > 1 else 0
        mapped[j] = i if iou.shape[0] > 1 and iou[i, j] >= 0.5 else -1
    same = float(np.mean(mapped[ours] == theirs))
    return float(ap[0][0]), int(tp[0][0]), int(fp[0][0]), int(fn[0][0]), same


def _run_both(bindir, model_bin, m, torch, rel, tmp_path, augment):
    """Our infer and Cellpose's eval on one image; the flows of both, our masks,
    Cellpose's masks, and Cellpose's compute_masks run on OUR flows."""
    from cellpose import dynamics
    path = os.path.join(DATA, rel)
    extra = ["--augment"] if augment else []
    r = run_prog(bindir, "infer", model_bin, path, "--out", str(tmp_path), "--save-flows", *extra)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    ours = tifffile.imread(res["masks_file"]).astype(np.int64)
    fl = tifffile.imread(res["masks_file"].replace("_cp_masks.tif", "_flows.tif"))
    img = tifffile.imread(path)
    with torch.no_grad():
        theirs, flows, _ = m.eval(img, channels=[0, 0], augment=augment)
    dflow = float(max(np.abs(fl[:2] - flows[1]).max(), np.abs(fl[2] - flows[2]).max()))
    on_ours = dynamics.compute_masks(fl[:2].copy(), fl[2].copy(), niter=res["niter"], cellprob_threshold=0.0,
                                     flow_threshold=0.4, min_size=15, max_size_fraction=0.4,
                                     device=torch.device("cpu"))
    return res, ours, theirs.astype(np.int64), flows, dflow, on_ours


@pytest.mark.parametrize("augment", [False, True])
def test_masks_match_cellpose(bindir, model, tmp_path, augment):
    """Four real fluorescence images of four sizes: flows within 1e-4 of
    Cellpose's, Cellpose's compute_masks on our flows gives our masks exactly,
    and without augment our masks are Cellpose's (AP@0.5 = 1.0). With augment
    (more tiles, flipped: more chances for a float-level flow difference to
    decide a marginal seed) AP and pixel figures are printed, not required."""
    m, torch = _cellpose_model(model)
    for rel in IMAGES:
        res, ours, theirs, _, dflow, on_ours = _run_both(bindir, model, m, torch, rel, tmp_path, augment)
        ap, tp, fp, fn, same = _agreement(ours, theirs)
        exact = int(np.sum(ours == theirs))
        print(f"\n  {rel} {ours.shape} augment={augment}: flows max |diff| {dflow:.1e}; ours {ours.max()} masks, "
              f"Cellpose {theirs.max()}; AP@0.5 {ap:.4f} (tp {tp} fp {fp} fn {fn}); pixel agreement after matching "
              f"{same:.6f}; identical label images: {exact == ours.size} ({ours.size - exact} pixels differ); "
              f"Cellpose's dynamics on our flows: {int(np.sum(on_ours != ours))} pixels differ from ours")
        assert theirs.max() >= (1 if augment else 5), f"{rel}: Cellpose finds only {theirs.max()} masks; the test would prove little"
        assert dflow < 1e-4, f"{rel}: flows differ from Cellpose's by {dflow}"
        assert np.array_equal(on_ours, ours), f"{rel}: our flows -> masks path differs from Cellpose's"
        if not augment:
            assert ap == 1.0 and fp == 0 and fn == 0, f"{rel}: masks differ from Cellpose's (AP@0.5 {ap})"
            assert same > 0.99, f"{rel}: pixel agreement {same}"


def test_sensitive_image(bindir, model, tmp_path):
    """On an image where the masks are chaotic in the flows, the figures that
    still must hold: our flows within 1e-4 of Cellpose's, our masks equal to
    Cellpose's compute_masks run on our flows (0 pixels differ); printed next
    to how far Cellpose's own masks move when its flows get 1e-5 noise."""
    from cellpose import dynamics
    m, torch = _cellpose_model(model)
    res, ours, theirs, flows, dflow, on_ours = _run_both(bindir, model, m, torch, CHAOTIC, tmp_path, False)
    dP = flows[1] + np.random.default_rng(0).normal(0, 1e-5, flows[1].shape)
    noisy = dynamics.compute_masks(dP.astype(np.float32), flows[2], niter=res["niter"], cellprob_threshold=0.0,
                                   flow_threshold=0.4, min_size=15, max_size_fraction=0.4, device=torch.device("cpu"))
    ap = _agreement(ours, theirs)
    print(f"\n  {CHAOTIC} {ours.shape}: flows max |diff| vs Cellpose {dflow:.2e}; ours {ours.max()} masks, Cellpose "
          f"{theirs.max()} (AP@0.5 {ap[0]:.3f}, {int(np.sum(ours != theirs))} pixels differ); Cellpose's masks on its "
          f"flows + 1e-5 noise: {noisy.max()} masks, {int(np.sum(noisy != theirs))} pixels differ; Cellpose's "
          f"compute_masks on our flows vs our masks: {int(np.sum(on_ours != ours))} pixels differ")
    assert dflow < 1e-4
    assert np.array_equal(on_ours, ours)
