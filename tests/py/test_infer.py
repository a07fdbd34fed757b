"""`infer` end to end: a tiny CPnet trained by `train` on seeded synthetic
data segments a synthetic image; the mask hash does not depend on the batch
size or the thread count; odd inputs (16-bit, float, RGB, all-zero, 1x1,
corrupt file, wrong model) behave; --gt gives the same AP as Cellpose's
metrics on the same masks."""
import json
import os

import numpy as np
import pytest
import tifffile
from conftest import ROOT, run_prog

CFG = os.path.join(ROOT, "configs", "tiny.yaml")


@pytest.fixture(scope="module")
def model(bindir, tmp_path_factory):
    d = tmp_path_factory.mktemp("inf")
    r = run_prog(bindir, "synth", "--out", str(d / "data"), "--n", "6", "--size", "96", "--seed", "11", "--diameter", "18")
    assert r.returncode == 0, r.stderr
    r = run_prog(bindir, "train", "--config", CFG, "--data", str(d / "data"), "--out", str(d / "run"), "--seed", "1",
                 "--n-epochs", "30")
    assert r.returncode == 0, r.stderr
    return str(d / "run" / "model.bin"), str(d / "data")


def _infer(bindir, model, image, out, *extra):
    r = run_prog(bindir, "infer", model, image, "--out", out, *extra)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_invariance_and_outputs(bindir, model, tmp_path):
    m, data = model
    img = os.path.join(data, "synth_000.tif")
    a = _infer(bindir, m, img, str(tmp_path), "--batch-size", "1", "--threads", "1")
    b = _infer(bindir, m, img, str(tmp_path), "--batch-size", "8", "--threads", "2", "--save-flows", "--save-outlines")
    png = open(os.path.join(str(tmp_path), "synth_000_outlines.png"), "rb").read()
    assert png[:4] == b"\x89PNG" and len(png) > 1000
    assert a["masks_sha256"] == b["masks_sha256"]
    masks = tifffile.imread(a["masks_file"])
    assert masks.shape == (96, 96) and masks.dtype == np.uint16 and masks.max() == a["masks"]
    flows = tifffile.imread(os.path.join(str(tmp_path), "synth_000_flows.tif"))
    assert flows.shape == (3, 96, 96) and flows.dtype == np.float32
    # an image twice the size through tiles (224-px tiles, overlap): still batch/thread invariant
    big = np.tile(tifffile.imread(img), (3, 3))
    p = str(tmp_path / "big.tif")
    tifffile.imwrite(p, big)
    c = _infer(bindir, m, p, str(tmp_path), "--batch-size", "1")
    d = _infer(bindir, m, p, str(tmp_path), "--batch-size", "5", "--threads", "1")
    assert c["masks_sha256"] == d["masks_sha256"] and c["height"] == 288


def test_ap_equals_cellpose(bindir, model, tmp_path):
    from cellpose import metrics
    m, data = model
    img, gt = os.path.join(data, "synth_001.tif"), os.path.join(data, "synth_001_masks.tif")
    a = _infer(bindir, m, img, str(tmp_path), "--gt", gt)
    ap, tp, fp, fn = metrics.average_precision([tifffile.imread(gt)], [tifffile.imread(a["masks_file"]).astype(np.int32)])
    assert abs(a["ap"]["ap50"] - ap[0][0]) < 1e-6 and a["ap"]["tp50"] == tp[0][0] and a["ap"]["fn50"] == fn[0][0]


def test_odd_inputs(bindir, model, tmp_path):
    m, data = model
    base = tifffile.imread(os.path.join(data, "synth_002.tif"))
    cases = {
        "u16": base,
        "f32": base.astype(np.float32) / 65535,
        "rgb": np.stack([base, base // 2, base // 3], -1).astype(np.uint16),
        "zero": np.zeros((64, 80), np.uint8),
        "one": np.ones((1, 1), np.uint8),
        "small": (np.arange(35).reshape(5, 7) * 7).astype(np.uint8),
    }
    for name, arr in cases.items():
        p = str(tmp_path / (name + ".tif"))
        tifffile.imwrite(p, arr)
        r = _infer(bindir, m, p, str(tmp_path))
        assert r["height"] == arr.shape[0], name
    for name in ("zero", "one", "small"):  # nothing to find, no crash
        assert _infer(bindir, m, str(tmp_path / (name + ".tif")), str(tmp_path))["masks"] == 0, name
    bad = {
        "tiny_rgb.tif": (np.ones((5, 6, 3), np.uint8), "8"),
        "corrupt.tif": (None, "corrupt.tif"),
    }
    for name, (arr, word) in bad.items():
        p = str(tmp_path / name)
        if arr is None:
            open(p, "wb").write(b"II*\x00" + bytes(100))
        else:
            tifffile.imwrite(p, arr)
        r = run_prog(bindir, "infer", m, p, "--out", str(tmp_path))
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 1 and len(lines) == 1 and word in lines[0], (name, r.stderr)
        assert not os.path.exists(str(tmp_path / name.replace(".tif", "_cp_masks.tif")))
    r = run_prog(bindir, "infer", os.path.join(data, "synth_000.tif"), os.path.join(data, "synth_000.tif"))
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1


def test_dir_json_features_augment(bindir, model, tmp_path):
    """--dir over a folder (masks and outputs skipped, progress line, one JSON
    line per image, --json file), --dump-features PNG, --augment invariant to
    the batch size, --bsize, and the refusals."""
    m, data = model
    out = tmp_path / "out"
    out.mkdir()
    r = run_prog(bindir, "infer", m, "--dir", data, "--out", str(out), "--json", str(tmp_path / "all.jsonl"))
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    names = sorted(f for f in os.listdir(data) if f.endswith(".tif") and not f.endswith("_masks.tif"))
    assert [os.path.basename(x["image"]) for x in lines] == names
    assert "infer" in r.stderr and "img/s" in r.stderr  # the progress line
    assert [json.loads(x) for x in open(tmp_path / "all.jsonl")] == lines
    for x in lines:  # same hashes as one image at a time
        one = _infer(bindir, m, x["image"], str(tmp_path))
        assert one["masks_sha256"] == x["masks_sha256"]
    img = os.path.join(data, "synth_000.tif")
    a = _infer(bindir, m, img, str(tmp_path), "--augment", "--batch-size", "1", "--dump-features", "up0")
    b = _infer(bindir, m, img, str(tmp_path), "--augment", "--batch-size", "8", "--threads", "1")
    assert a["masks_sha256"] == b["masks_sha256"] and a["augment"] is True
    import cv2
    png = cv2.imread(str(tmp_path / "synth_000_features_up0.png"), cv2.IMREAD_UNCHANGED)
    rs = a["rescale"]
    assert png.shape == (int(96 * rs), int(96 * rs), 3) and png.std() > 5, png.shape
    c = _infer(bindir, m, img, str(tmp_path), "--bsize", "32")
    assert c["height"] == 96
    for bad, word in ((["--bsize", "30"], "multiple of 16"), (["--dump-features", "middle"], "unknown layer"),
                      (["--channels", "5,0"], "channels"), (["--dump-features", "down9"], "no layer")):
        r = run_prog(bindir, "infer", m, img, "--out", str(tmp_path), *bad)
        assert r.returncode in (1, 2) and len(r.stderr.strip().splitlines()) == 1 and word in r.stderr, (bad, r.stderr)
    r = run_prog(bindir, "infer", m, "--dir", str(tmp_path / "nonexistent"))
    assert r.returncode == 1 and "nonexistent" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run_prog(bindir, "infer", m)
    assert r.returncode == 2
