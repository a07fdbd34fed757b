"""`compare` end to end, every figure checked against something we did not
write: numpy (L2, cosine, max|diff|, ulp distance through int views, model
statistics, SHA-256 via hashlib) on perturbed copies of a model written with
the real `safetensors` package; the real Cellpose's metrics
(cellpose.metrics.average_precision / mask_ious) and numpy pixel counts on
the bundled bbbc039 masks against a shifted and edited copy; and two `train`
runs of configs/tiny.yaml (identical seeds -> identical, exit 0; another seed
-> divergence at epoch 0 and at step 1's first op; another learning rate ->
the trace names step 3, the first step with lr > 0, and the entry "params").
Bad inputs: one line, exit 2."""
import glob
import hashlib
import json
import os
import shutil

import numpy as np
import pytest
import tifffile
from conftest import ROOT, run_prog

CFG = os.path.join(ROOT, "configs", "tiny.yaml")
DSB = os.path.join(ROOT, "data", "samples", "dsb2018_stage1test_fluo")
BBBC = os.path.join(ROOT, "data", "samples", "bbbc039_u2os_nuclei")


def _compare(bindir, *args):
    r = run_prog(bindir, "compare", "--json", *args)
    assert r.returncode in (0, 1), r.stderr
    return r.returncode, json.loads(r.stdout)


@pytest.fixture(scope="module")
def runs(bindir, tmp_path_factory):
    """Runs a, b (seed 1, 2 vs 1 threads), c (seed 2), d (seed 1, another lr), all traced, 2 epochs."""
    d = tmp_path_factory.mktemp("cmp")
    data = d / "data"
    data.mkdir()
    for i in range(3):
        for suf in ("", "_masks"):
            shutil.copy(os.path.join(DSB, f"dsbfluo_{i:03d}{suf}.tif"), data)
    out = {}
    for name, extra in (("a", ["--seed", "1", "--threads", "2"]), ("b", ["--seed", "1", "--threads", "1"]),
                        ("c", ["--seed", "2", "--threads", "2"]),
                        ("d", ["--seed", "1", "--threads", "2", "--learning-rate", "0.004"])):
        r = run_prog(bindir, "train", "--deterministic", "--config", CFG, "--data", str(data), "--out", str(d / name),
                     "--n-epochs", "2", "--trace", *extra)
        assert r.returncode == 0, r.stderr
        out[name] = str(d / name)
    return out


# ---- models vs numpy ----

def _ord(bits):
    """float32 bit patterns (int32 view) -> ordered int64 line (+0 == -0 == 0)."""
    b = bits.astype(np.int64)
    return np.where(b < 0, -(b & 0x7FFFFFFF), b)


def _expect(a, b):
    """compare.h's figures for two float32 arrays, by numpy."""
    a64, b64 = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    ia, ib = a.view(np.int32).ravel(), b.view(np.int32).ravel()
    fin = np.isfinite(a64) & np.isfinite(b64)
    ulp = np.abs(_ord(ia) - _ord(ib))
    na, nb = np.isnan(a64), np.isnan(b64)
    ulp = np.where(na & nb, 0, np.where(na | nb, 2 ** 32, ulp))
    d = a64[fin] - b64[fin]
    la, lb = np.sqrt(np.sum(a64[fin] ** 2)), np.sqrt(np.sum(b64[fin] ** 2))
    # compare.h's conventions for zero norms: cosine 1 when both are 0, 0 when one is
    cos = np.sum(a64[fin] * b64[fin]) / (la * lb) if la > 0 and lb > 0 else float(la == lb)
    return dict(ndiff=int(np.count_nonzero(ia != ib)), l2_diff=float(np.sqrt(np.sum(d * d))),
                rel_l2=float(np.sqrt(np.sum(d * d)) / la), cosine=float(cos),
                max_abs=float(np.max(np.abs(d))) if d.size else 0.0, max_ulp=int(ulp.max()) if ulp.size else 0,
                nonfinite=int(np.count_nonzero(~fin)))


def _check(got, exp, what):
    assert got["ndiff"] == exp["ndiff"] and got["max_ulp"] == exp["max_ulp"], (what, got, exp)
    assert got["nonfinite"] == exp["nonfinite"], (what, got, exp)
    for k in ("l2_diff", "rel_l2", "cosine", "max_abs"):
        assert abs(got[k] - exp[k]) <= 1e-12 * max(1.0, abs(exp[k])), (what, k, got[k], exp[k])


def test_models_vs_numpy(bindir, runs, tmp_path):
    from safetensors.numpy import load_file, save_file
    ma = os.path.join(runs["a"], "model.bin")
    base = load_file(ma)
    rng = np.random.default_rng(3)
    names = sorted(k for k, v in base.items() if v.dtype == np.float32 and v.size >= 8)
    pert = {k: v.copy() for k, v in base.items()}
    w = names[0]
    pert[w] = pert[w] + rng.normal(0, 1e-3, pert[w].shape).astype(np.float32)  # small noise
    x = pert[names[1]].ravel()
    x[0] = np.nextafter(x[0], np.float32(np.inf))  # one ulp
    x[2] = np.float32(np.nan)  # NaN vs number
    pert[names[1]] = x.reshape(base[names[1]].shape)
    y = pert[names[2]].ravel()
    y[:] = 0.0
    y[3] = -0.0  # +0 vs -0: bits differ, distance 0 (after zeroing, a has values, b zeros)
    pert[names[2]] = y.reshape(base[names[2]].shape)
    z = pert[names[3]].ravel()
    z[1] = -z[1]  # a sign flip alone: the distance crosses zero (2 * |x| in ulps)
    pert[names[3]] = z.reshape(base[names[3]].shape)
    pb = str(tmp_path / "b.safetensors")
    save_file(pert, pb)
    rc, doc = _compare(bindir, "--all", ma, pb)
    assert rc == 1 and not doc["identical"]
    rows = {r["name"]: r for r in doc["tensors"]}
    assert len(rows) == len(base)
    for k in base:
        if base[k].dtype != np.float32:
            continue
        e = _expect(base[k], pert[k])
        _check(rows[k], e, k)
        assert rows[k]["identical"] == (base[k].tobytes() == pert[k].tobytes())
    assert rows[names[1]]["max_ulp"] == 2 ** 32 and rows[names[1]]["nonfinite"] == 1
    # overall = all float32 tensors concatenated in a's order (the I64 counters are equal)
    cat = lambda t: np.concatenate([t[k].ravel() for k in base if base[k].dtype == np.float32])
    _check(doc["overall"], _expect(cat(base), cat(pert)), "overall")
    # identical files: exit 0; the params SHA-256 equals the manifest's (cpnet_hash, another code path)
    rc, doc = _compare(bindir, ma, os.path.join(runs["b"], "model.bin"))
    assert rc == 0 and doc["identical"] and doc["tensors"] == []
    man = json.load(open(os.path.join(runs["a"], "manifest.json")))
    assert doc["models"][0]["params_sha256"] == man["epochs"][-1]["params_sha256"]


def test_three_models_reports(bindir, runs, tmp_path):
    from safetensors.numpy import load_file
    paths = [os.path.join(runs[k], "model.bin") for k in ("a", "c", "d")]
    out = tmp_path / "rep"
    rc, doc = _compare(bindir, "--out", str(out), *paths)
    assert rc == 1
    ts = [load_file(p) for p in paths]
    # header order of the file = data order; hashlib over the raw bytes gives params_sha256
    for p, t, m in zip(paths, ts, doc["models"]):
        with open(p, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            hdr = json.loads(f.read(n))
            data = f.read()
        order = sorted((v["data_offsets"][0], k) for k, v in hdr.items() if k != "__metadata__")
        h = hashlib.sha256()
        for _, k in order:
            b, e = hdr[k]["data_offsets"]
            h.update(data[b:e])
        assert m["params_sha256"] == h.hexdigest()
        v = np.concatenate([t[k].astype(np.float64).ravel() for _, k in order if t[k].dtype == np.float32])
        assert m["n_params"] == v.size
        for key, ref in (("l2", np.sqrt(np.sum(v * v))), ("mean", v.mean()), ("std", v.std()), ("min", v.min()),
                         ("max", v.max())):
            assert abs(m[key] - ref) <= 1e-10 * max(1.0, abs(ref)), (key, m[key], ref)
    fl = lambda t: np.concatenate([t[k].astype(np.float64).ravel() for k in ts[0] if ts[0][k].dtype == np.float32])
    for i in range(3):
        for j in range(3):
            a, b = fl(ts[i]), fl(ts[j])
            assert abs(doc["l2"][i][j] - np.sqrt(np.sum((a - b) ** 2))) <= 1e-9 * max(1, doc["l2"][i][j])
            assert abs(doc["cosine"][i][j] - a @ b / np.sqrt((a @ a) * (b @ b))) <= 1e-12
            assert doc["max_abs"][i][j] == np.max(np.abs(a - b))
    csv = np.genfromtxt(out / "similarity_l2.csv", delimiter=",", skip_header=1)[:, 1:]
    assert np.allclose(csv, doc["l2"], rtol=1e-15, atol=0)
    for f in ("similarity_l2.png", "similarity_cosine.png", "similarity_maxabs.png", "weights_0.png", "weights_2.png"):
        assert open(out / f, "rb").read(8) == b"\x89PNG\r\n\x1a\n", f
    assert len(open(out / "model_stats.csv").read().splitlines()) == 4


# ---- masks vs Cellpose ----

def _perturb(a, seed):
    """Shift by (3, 2), drop two masks, split one in two halves, merge two neighbours."""
    b = np.zeros_like(a)
    b[3:, 2:] = a[:-3, :-2]
    labs = np.unique(b[b > 0])
    rng = np.random.default_rng(seed)
    drop = rng.choice(labs, 2, replace=False)
    b[np.isin(b, drop)] = 0
    keep = [l for l in labs if l not in drop]
    big = max(keep, key=lambda l: np.count_nonzero(b == l))  # split the largest mask by its median row
    ys, xs = np.nonzero(b == big)
    b[ys[ys > np.median(ys)], xs[ys > np.median(ys)]] = b.max() + 1
    m1, m2 = [l for l in keep if l != big][:2]
    b[b == m2] = m1  # merge
    return b


def _split_merge(a, b):
    """compare.h's definitions, by numpy: objects of `outer` that have >= 2 objects of `inner` with > 50% inside."""
    def count(outer, inner):
        owners = []
        for l in np.unique(inner[inner > 0]):
            o = outer[inner == l]
            vals, cnt = np.unique(o, return_counts=True)
            k = np.argmax(cnt)
            if vals[k] != 0 and 2 * cnt[k] > o.size:
                owners.append(vals[k])
        _, c = np.unique(owners, return_counts=True)
        return int(np.count_nonzero(c >= 2))
    return count(a, b), count(b, a)


def _mask_expect(a, b):
    from cellpose import metrics
    ap, tp, fp, fn = metrics.average_precision([a], [b], threshold=[0.5, 0.75, 0.9])
    iou, preds = metrics.mask_ious(a, b)
    match = np.zeros(a.max() + 1, np.int64)
    match[1:] = np.where(iou >= 0.5, preds, 0)
    both = (a > 0) & (b > 0)
    split, merged = _split_merge(a, b)
    return dict(ap=ap[0], tp=tp[0], fp=fp[0], fn=fn[0], miou=float(iou[iou >= 0.5].mean()),
                px_fg=int(np.count_nonzero((a > 0) != (b > 0))),
                px_assign=int(np.count_nonzero(both & (match[a] != b))), split=split, merged=merged)


def _check_masks(got, a, b):
    e = _mask_expect(a, b)
    assert np.array_equal(np.array(got["ap"], np.float32), e["ap"]), (got["ap"], e["ap"])
    assert got["tp"] == e["tp"].tolist() and got["fp"] == e["fp"].tolist() and got["fn"] == e["fn"].tolist()
    assert abs(got["mean_matched_iou"] - e["miou"]) <= 1e-12
    assert got["unmatched_a"] == e["fn"][0] and got["unmatched_b"] == e["fp"][0]
    assert got["pixels_fg_disagree"] == e["px_fg"] and got["pixels_assign_disagree"] == e["px_assign"]
    assert got["split"] == e["split"] and got["merged"] == e["merged"]
    return e


def test_masks_vs_cellpose(bindir, tmp_path):
    pa = os.path.join(BBBC, "bbbc039_000_masks.tif")
    a = tifffile.imread(pa).astype(np.int64)
    b = _perturb(a, 0)
    pb = str(tmp_path / "bbbc039_000_cp_masks.tif")
    tifffile.imwrite(pb, b.astype(np.uint16))
    out = tmp_path / "diff"
    rc, got = _compare(bindir, "--out", str(out), pa, pb)
    assert rc == 1 and not got["identical"]
    e = _check_masks(got, a, b)
    assert got["split"] >= 1 and got["merged"] >= 1 and got["ap"][0] < 1  # the edits are seen
    print(f"masks: AP {got['ap']}, split {e['split']}, merged {e['merged']}, px {e['px_fg']} + {e['px_assign']}")
    # the diff picture, read with PIL: each colour only where compare.h's legend puts it (numpy's masks)
    from PIL import Image
    rgb = np.asarray(Image.open(out / "bbbc039_000_diff.png").convert("RGB"))
    assert rgb.shape == a.shape + (3,)
    col = lambda c: np.all(rgb == np.array(c, np.uint8), axis=-1)
    def outline(x):
        o = np.zeros(x.shape, bool)
        for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            s = np.roll(x, (dy, dx), axis=(0, 1))
            diff = s != x
            if dy == 1: diff[0, :] = False
            if dy == -1: diff[-1, :] = False
            if dx == 1: diff[:, 0] = False
            if dx == -1: diff[:, -1] = False
            o |= diff
        return o & (x > 0)
    oa, ob = outline(a), outline(b)
    inner = ~oa & ~ob
    assert np.array_equal(col((255, 255, 255)), oa & ob)
    assert np.array_equal(col((0, 200, 255)), oa & ~ob) and np.array_equal(col((255, 60, 60)), ob & ~oa)
    assert np.array_equal(col((0, 170, 0)), inner & (a > 0) & (b == 0))
    assert np.array_equal(col((200, 0, 200)), inner & (a == 0) & (b > 0))
    assert np.array_equal(col((0, 0, 0)), inner & (a == 0) & (b == 0))
    assert np.count_nonzero(col((230, 160, 0))) > 0 and np.count_nonzero(col((110, 110, 110))) > 0
    # identical label images: exit 0
    rc, got = _compare(bindir, pa, pa)
    assert rc == 0 and got["identical"] and got["ap"] == [1.0, 1.0, 1.0]


def test_mask_folders(bindir, tmp_path):
    da, db = tmp_path / "gt", tmp_path / "pred"
    da.mkdir(), db.mkdir()
    pairs = []
    for i in range(3):
        a = tifffile.imread(os.path.join(BBBC, f"bbbc039_{i:03d}_masks.tif")).astype(np.int64)
        b = _perturb(a, i) if i != 1 else a
        tifffile.imwrite(da / f"img{i}_masks.tif", a.astype(np.uint16))
        tifffile.imwrite(db / f"img{i}_cp_masks.tif", b.astype(np.uint16))
        pairs.append((a, b))
    tifffile.imwrite(da / "lonely_masks.tif", pairs[0][0].astype(np.uint16))
    rc, doc = _compare(bindir, "--out", str(tmp_path / "o"), str(da), str(db))
    assert rc == 1 and len(doc["pairs"]) == 3 and doc["unpaired"] == [{"file": "lonely_masks.tif", "only_in": "A"}]
    aps = []
    for got, (a, b) in zip(doc["pairs"], pairs):
        aps.append(_check_masks(got, a, b)["ap"])
    assert doc["pairs"][1]["identical"] and not doc["pairs"][0]["identical"]
    assert np.allclose(doc["mean"]["ap"], np.mean(np.array(aps, np.float64), axis=0), rtol=1e-12)
    assert len(glob.glob(str(tmp_path / "o" / "*_diff.png"))) == 3


# ---- runs ----

def test_runs(bindir, runs, tmp_path):
    rc, doc = _compare(bindir, runs["a"], runs["b"])
    assert rc == 0 and doc["identical"] and doc["epochs"]["first_divergence"] is None
    assert doc["trace"]["first_step"] is None and doc["trace"]["steps"] == 4
    assert [s["key"] for s in doc["settings"]] == ["environment.threads"]
    r = run_prog(bindir, "compare", runs["a"], runs["b"])
    assert r.returncode == 0 and r.stdout.strip().endswith("identical")
    # another seed: divergence at epoch 0, step 1, the first forward op
    rc, doc = _compare(bindir, "--out", str(tmp_path / "o"), runs["a"], runs["c"])
    assert rc == 1 and doc["epochs"]["first_divergence"] == 0
    assert {"key": "seed", "a": 1, "b": 2} in doc["settings"]
    t = doc["trace"]
    assert t["first_step"] == 1 and t["epoch"] == 0 and t["entry_index"] == 0
    assert t["entry"] == "downsample.down.res_down_0.proj:out"
    m = doc["models"]
    assert len(m["tensors"]) > 100 and m["overall"]["rel_l2"] > 0.01 and m["overall"]["cosine"] < 1
    assert open(tmp_path / "o" / "loss_overlay.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    # another learning rate: epoch 0 has lr 0 (warm-up), so the runs agree through step 2; at step 3
    # (epoch 1) the forward, loss and gradients still agree and the first difference is the update
    rc, doc = _compare(bindir, runs["a"], runs["d"])
    assert rc == 1 and doc["epochs"]["first_divergence"] == 1
    t = doc["trace"]
    assert (t["first_step"], t["epoch"], t["entry"]) == (3, 1, "params"), t
    assert any(s["key"] == "config.train.learning_rate" for s in doc["settings"])
    # the trace really holds every op and gradient: count them from the model file
    from safetensors.numpy import load_file
    line = json.loads(open(os.path.join(runs["a"], "trace.jsonl")).readline())
    names = [e[0] for e in line["entries"]]
    params = [k for k in load_file(os.path.join(runs["a"], "model.bin")) if "running" not in k and "num_batches" not in k
              and k not in ("diam_mean", "diam_labels")]
    assert sorted(n[5:] for n in names if n.startswith("grad:")) == sorted(params)
    assert names.index("loss") == len(names) - len(params) - 2 and names[-1] == "params"


# ---- bad inputs ----

def _bad(bindir, *args):
    r = run_prog(bindir, "compare", *args)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and r.stdout == "", (r.returncode, r.stderr, r.stdout)
    return lines[0]


def test_bad_inputs(bindir, runs, tmp_path):
    ma = os.path.join(runs["a"], "model.bin")
    assert "nope.bin" in _bad(bindir, ma, str(tmp_path / "nope.bin"))
    raw = open(ma, "rb").read()
    (tmp_path / "trunc.bin").write_bytes(raw[: len(raw) // 2])
    assert "trunc.bin" in _bad(bindir, ma, str(tmp_path / "trunc.bin"))
    from safetensors.numpy import load_file, save_file
    t = load_file(ma)
    k = next(k for k, v in t.items() if v.ndim == 4)
    t[k] = np.zeros((1,) + t[k].shape[1:], np.float32)
    save_file(t, str(tmp_path / "shape.bin"))
    line = _bad(bindir, ma, str(tmp_path / "shape.bin"))
    assert k in line and "shape" in line
    pa = os.path.join(BBBC, "bbbc039_000_masks.tif")
    small = tifffile.imread(pa)[:100, :90]
    tifffile.imwrite(tmp_path / "small_masks.tif", small)
    line = _bad(bindir, pa, str(tmp_path / "small_masks.tif"))
    assert "small_masks.tif" in line and "100 x 90" in line
    line = _bad(bindir, ma, pa)
    assert "model" in line and "mask image" in line
    assert "only" not in _bad(bindir, runs["a"], pa)
    # --trace starts with a run: adding it on --resume is refused (one line, exit 2, the run untouched)
    before = open(os.path.join(runs["a"], "trace.jsonl"), "rb").read()
    r = run_prog(bindir, "train", "--config", CFG, "--data", str(tmp_path), "--resume", runs["a"], "--trace")
    assert r.returncode == 2 and "--trace" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert open(os.path.join(runs["a"], "trace.jsonl"), "rb").read() == before
