"""`eval` end to end: its per-image and mean figures equal the real Cellpose's
metrics (average_precision, aggregated_jaccard_index, mask_ious) on the same
masks; the baselines through the CLI equal cv2 + Cellpose on uint8 images and
their written masks rescore to the same table; the sweep runs infer over a
2x2 grid and its table and agreement matrix equal Cellpose's AP on the masks
it left; bad inputs give one line, a non-zero exit and no output files."""
import csv
import json
import os
import shutil

import cv2
import numpy as np
import pytest
import tifffile
from conftest import ROOT, run_prog

SAMPLES = os.path.join(ROOT, "data", "samples")
TH10 = np.arange(0.5, 1.0, 0.05)


def _perturb(g, k):
    """Predictions that are not the ground truth: shifted, eroded, split, some dropped."""
    m = np.roll(g, (k + 1, 2 - k), axis=(0, 1)).astype(np.int64)
    if k % 2:
        p = np.pad(m, 1)
        keep = (p[1:-1, 1:-1] == p[:-2, 1:-1]) & (p[1:-1, 1:-1] == p[2:, 1:-1])
        m = np.where(keep, m, 0)
    m[np.isin(m, np.arange(1, m.max() + 1, 7))] = 0  # missing objects (labels now have gaps)
    ys, xs = np.nonzero(m == 5)
    if len(xs):  # one split object
        m[ys[xs > np.median(xs)], xs[xs > np.median(xs)]] = m.max() + 1
    return m.astype(np.uint16)


@pytest.fixture(scope="module")
def pair_dirs(tmp_path_factory):
    """gt/ and pred/ from bundled labels: three tifs, one gt as 16-bit PNG, one
    prediction named NAME_masks.tif (accepted when there is no _cp_masks)."""
    d = tmp_path_factory.mktemp("pairs")
    gt, pred = d / "gt", d / "pred"
    gt.mkdir(), pred.mkdir()
    srcs = [("bbbc039_u2os_nuclei", "bbbc039_000"), ("dsb2018_stage1test_fluo", "dsbfluo_009"),
            ("dsb2018_stage1test_fluo", "dsbfluo_003"), ("bbbc039_u2os_nuclei", "bbbc039_002")]
    names = []
    for k, (folder, name) in enumerate(srcs):
        g = tifffile.imread(os.path.join(SAMPLES, folder, name + "_masks.tif"))
        if k == 2:
            cv2.imwrite(str(gt / (name + "_masks.png")), g.astype(np.uint16))
        else:
            tifffile.imwrite(str(gt / (name + "_masks.tif")), g)
        tifffile.imwrite(str(pred / (name + ("_masks.tif" if k == 3 else "_cp_masks.tif"))), _perturb(g, k))
        names.append(name)
    return str(gt), str(pred), sorted(names)


def _cellpose_scores(gts, preds):
    from cellpose import metrics
    ap3, tp3, fp3, fn3 = metrics.average_precision(gts, preds)
    ap10 = metrics.average_precision(gts, preds, threshold=TH10)[0]
    ap3, ap10 = ap3.astype(np.float64), ap10.astype(np.float64)  # Cellpose's float32 values; means in float64
    aji = metrics.aggregated_jaccard_index(gts, preds)
    miou = []
    for g, p in zip(gts, preds):
        iout, _ = metrics.mask_ious(g, p)
        sel = iout[iout >= 0.5]
        miou.append(sel.mean() if len(sel) else 0.0)
    return ap3, tp3, fp3, fn3, ap10, aji, np.array(miou)


def _check_run(run, gts, preds, names):
    ap3, tp3, fp3, fn3, ap10, aji, miou = _cellpose_scores(gts, preds)
    imgs = run["images"]
    assert [i["image"] for i in imgs] == names
    worst = 0.0
    for n, im in enumerate(imgs):
        assert (im["tp50"], im["fp50"], im["fn50"]) == (tp3[n][0], fp3[n][0], fn3[n][0])
        assert im["n_gt"] == gts[n].max() and im["n_pred"] == preds[n].max()
        got = [im["ap50"], im["ap75"], im["ap90"], *im["ap_thresholds"], im["aji"], im["miou"]]
        want = [*ap3[n], *ap10[n], aji[n], miou[n]]
        worst = max(worst, float(np.max(np.abs(np.array(got) - np.array(want)))))
        assert im["ap50_95"] == pytest.approx(np.mean(ap10[n]), abs=1e-12)
    m = run["mean"]  # the mean over images of the per-image values (Cellpose papers' figure)
    assert m["ap50"] == pytest.approx(ap3[:, 0].mean(), abs=1e-12)
    assert m["ap75"] == pytest.approx(ap3[:, 1].mean(), abs=1e-12)
    assert m["ap50_95"] == pytest.approx(ap10.mean(), abs=1e-12)
    assert m["aji"] == pytest.approx(aji.mean(), abs=1e-12)
    assert m["tp50"] == tp3[:, 0].sum()
    return worst


def test_pred_equals_cellpose(bindir, pair_dirs, tmp_path):
    gt, pred, names = pair_dirs
    out_csv = str(tmp_path / "t.csv")
    r = run_prog(bindir, "eval", "--pred", pred, "--gt", gt, "--json", "--csv", out_csv)
    assert r.returncode == 0, r.stderr
    run = json.loads(r.stdout)["runs"][0]
    gts, preds = [], []
    for n in names:
        gp = os.path.join(gt, n + "_masks.tif")
        gts.append(tifffile.imread(gp) if os.path.exists(gp) else cv2.imread(gp[:-4] + ".png", cv2.IMREAD_UNCHANGED))
        pp = os.path.join(pred, n + "_cp_masks.tif")
        preds.append(tifffile.imread(pp if os.path.exists(pp) else pp.replace("_cp_masks", "_masks")))
    gts = [g.astype(np.int32) for g in gts]
    preds = [p.astype(np.int32) for p in preds]
    worst = _check_run(run, gts, preds, names)
    print(f"eval vs Cellpose metrics: max |diff| {worst:.3g} over AP (13 thresholds), AJI, mIoU on {len(names)} images")
    assert worst <= 1e-7  # Cellpose's AP is float32; ours the same float32 values, widened
    rows = list(csv.DictReader(open(out_csv)))
    assert [row["image"] for row in rows] == names + ["mean"]
    assert float(rows[-1]["ap50"]) == pytest.approx(run["mean"]["ap50"], rel=1e-8)
    md = run_prog(bindir, "eval", "--pred", pred, "--gt", gt)
    assert md.returncode == 0 and md.stdout.count("\n") == len(names) + 3 and "**mean (4 images)**" in md.stdout


def _one_line_error(r, *words):
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0 and len(lines) == 1, r.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])


def test_bad_inputs(bindir, pair_dirs, tmp_path):
    gt, pred, names = pair_dirs
    p2 = tmp_path / "p2"
    shutil.copytree(pred, p2)
    os.remove(p2 / (names[0] + "_cp_masks.tif"))
    csvp = str(tmp_path / "x.csv")
    _one_line_error(run_prog(bindir, "eval", "--pred", str(p2), "--gt", gt, "--csv", csvp), names[0], "--allow-missing")
    assert not os.path.exists(csvp)
    r = run_prog(bindir, "eval", "--pred", str(p2), "--gt", gt, "--allow-missing", "--json")
    assert r.returncode == 0 and names[0] in r.stderr and len(json.loads(r.stdout)["runs"][0]["images"]) == 3
    # a prediction of another size
    tifffile.imwrite(str(p2 / (names[0] + "_cp_masks.tif")), np.ones((20, 30), np.uint16))
    _one_line_error(run_prog(bindir, "eval", "--pred", str(p2), "--gt", gt, "--csv", csvp), names[0] + "_cp_masks.tif", "20 x 30")
    assert not os.path.exists(csvp)
    # empty ground truth
    g2 = tmp_path / "g2"
    shutil.copytree(gt, g2)
    tifffile.imwrite(str(g2 / (names[1] + "_masks.tif")), np.zeros(tifffile.imread(str(g2 / (names[1] + "_masks.tif"))).shape, np.uint16))
    _one_line_error(run_prog(bindir, "eval", "--pred", pred, "--gt", str(g2)), names[1] + "_masks.tif", "no object")
    # two files for one name, missing folder, no matching files
    shutil.copy(p2 / (names[2] + "_cp_masks.tif"), p2 / (names[2] + "_cp_masks.png"))
    _one_line_error(run_prog(bindir, "eval", "--pred", str(p2), "--gt", gt), "two files")
    _one_line_error(run_prog(bindir, "eval", "--pred", str(tmp_path / "nope"), "--gt", gt), "nope")
    (tmp_path / "empty").mkdir()
    _one_line_error(run_prog(bindir, "eval", "--pred", str(tmp_path / "empty"), "--gt", gt, "--allow-missing"), "no image")
    # baselines: the second image's gt is empty -> the first image's masks are removed again
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for n in ["dsbfluo_000", "dsbfluo_001"]:
        shutil.copy(os.path.join(SAMPLES, "dsb2018_stage1test_fluo", n + ".tif"), imgs)
        shutil.copy(os.path.join(SAMPLES, "dsb2018_stage1test_fluo", n + "_masks.tif"), imgs)
    tifffile.imwrite(str(imgs / "dsbfluo_001_masks.tif"), np.zeros(tifffile.imread(str(imgs / "dsbfluo_001.tif")).shape[:2], np.uint16))
    out = tmp_path / "bout"
    _one_line_error(run_prog(bindir, "eval", "--baseline", "otsu", "--images", str(imgs), "--gt", str(imgs), "--out", str(out)), "dsbfluo_001_masks.tif")
    assert not os.path.exists(out)
    _one_line_error(run_prog(bindir, "eval", "--baseline", "nosuch", "--images", str(imgs), "--gt", str(imgs)), "nosuch")


def test_baseline_cli(bindir, tmp_path):
    from cellpose import utils
    src = os.path.join(SAMPLES, "dsb2018_stage1test_fluo")
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    names = ["dsbfluo_000", "dsbfluo_005"]
    for n in names:
        shutil.copy(os.path.join(src, n + ".tif"), imgs)
        shutil.copy(os.path.join(src, n + "_masks.tif"), imgs)
    out = tmp_path / "out"
    r = run_prog(bindir, "eval", "--baseline", "all", "--images", str(imgs), "--gt", str(imgs), "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    runs = json.loads(r.stdout)["runs"]
    assert [x["method"] for x in runs] == ["binary", "otsu", "gaussian-otsu", "adaptive"]
    gts = [tifffile.imread(str(imgs / (n + "_masks.tif"))).astype(np.int32) for n in names]
    for run in runs:  # the written masks rescore to the same table
        preds = [tifffile.imread(str(out / run["method"] / (n + "_cp_masks.tif"))).astype(np.int32) for n in names]
        assert _check_run(run, gts, preds, names) <= 1e-7
    for n in names:  # otsu on uint8 images: cv2 Otsu + cv2 8-connected components + Cellpose's clean-up
        raw = tifffile.imread(str(imgs / (n + ".tif")))
        _, fg = cv2.threshold(raw, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        _, lab = cv2.connectedComponents(fg, connectivity=8)
        want = utils.fill_holes_and_remove_small_masks(lab.astype(np.int32), min_size=15)
        got = tifffile.imread(str(out / "otsu" / (n + "_cp_masks.tif")))
        assert np.array_equal(got, want), n
    rows = list(csv.DictReader(open(out / "eval.csv")))
    assert len(rows) == 4 * 3 and rows[2]["image"] == "mean"
    # --pred adds the model's row to the same table (here: the otsu masks as a "model")
    r = run_prog(bindir, "eval", "--baseline", "all", "--images", str(imgs), "--gt", str(imgs), "--pred", str(out / "otsu"))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 7 and lines[-1].startswith("| model |")
    assert lines[-1].split("|")[3:] == lines[3].split("|")[3:]  # model row == otsu row


def test_sweep(bindir, tmp_path):
    from cellpose import metrics
    data = tmp_path / "data"
    r = run_prog(bindir, "synth", "--out", str(data), "--n", "3", "--size", "96", "--seed", "11", "--diameter", "18")
    assert r.returncode == 0, r.stderr
    r = run_prog(bindir, "train", "--config", os.path.join(ROOT, "configs", "tiny.yaml"), "--data", str(data), "--out",
                 str(tmp_path / "run"), "--seed", "1", "--n-epochs", "8")
    assert r.returncode == 0, r.stderr
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    names = ["synth_000", "synth_001"]
    for n in names:
        shutil.copy(data / (n + ".tif"), imgs)
        shutil.copy(data / (n + "_masks.tif"), imgs)
    out = tmp_path / "sw"
    r = run_prog(bindir, "eval", "--sweep", "--model", str(tmp_path / "run" / "model.bin"), "--images", str(imgs), "--gt",
                 str(imgs), "--out", str(out), "--cellprob-threshold", "-3,0", "--flow-threshold", "0,0.4", "--json")
    assert r.returncode == 0, r.stderr
    runs = json.loads(r.stdout)["runs"]
    assert [x["method"] for x in runs] == ["cp=-3 ft=0", "cp=-3 ft=0.4", "cp=0 ft=0", "cp=0 ft=0.4"]
    gts = [tifffile.imread(str(imgs / (n + "_masks.tif"))).astype(np.int32) for n in names]
    masks = []
    for s, run in enumerate(runs):
        preds = [tifffile.imread(str(out / "sweep_runs" / f"s{s:02d}" / (n + "_cp_masks.tif"))).astype(np.int32) for n in names]
        assert _check_run(run, gts, preds, names) <= 1e-7
        masks.append(preds)
    assert sum(p.max() for p in masks[0]) > 0, "the lowest thresholds found no mask at all"
    agree = np.array([[float(v) for v in row[1:]] for row in list(csv.reader(open(out / "sweep_agreement.csv")))[1:]])
    want = np.zeros((4, 4))
    for i in range(4):
        for j in range(4):
            v = []
            for k in range(len(names)):
                a, b = masks[i][k], masks[j][k]
                v.append(1.0 if a.max() == 0 and b.max() == 0 else metrics.average_precision(a, b, threshold=[0.5])[0][0])
            want[i, j] = np.mean(v)
    print("sweep agreement:\n", agree)
    assert np.allclose(agree, want, atol=1e-7, rtol=0)
    assert np.allclose(json.loads(r.stdout)["agreement_ap50"], agree, atol=1e-8, rtol=0)
    png = open(out / "sweep_agreement.png", "rb").read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 3000
    assert len(list(csv.DictReader(open(out / "sweep.csv")))) == 4 * 3
    # an axis infer does not know is refused before anything runs; a bad value is named
    r = run_prog(bindir, "eval", "--sweep", "--model", str(tmp_path / "run" / "model.bin"), "--images", str(imgs), "--gt",
                 str(imgs), "--out", str(tmp_path / "sw2"), "--niter", "10,x")
    _one_line_error(r, "--niter", "'x'")
    assert not os.path.exists(tmp_path / "sw2")
