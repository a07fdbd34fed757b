"""`train` end to end on seeded synthetic data (bin/synth) with the tiny
config: the determinism contract by hash (same seed twice, 1 vs 2 threads,
another seed differs), resume after SIGKILL equals the uninterrupted run
epoch by epoch, the manifest and loss.png, and one-line errors for bad data."""
import json
import os

import numpy as np
import pytest
import tifffile
from conftest import ROOT, run_prog, train_killed

CFG = os.path.join(ROOT, "configs", "tiny.yaml")


@pytest.fixture(scope="module")
def data(bindir, tmp_path_factory):
    d = str(tmp_path_factory.mktemp("synth"))
    r = run_prog(bindir, "synth", "--out", d, "--n", "6", "--size", "96", "--seed", "5", "--diameter", "18")
    assert r.returncode == 0, r.stderr
    return d


def _train(bindir, data, out, *extra):
    r = run_prog(bindir, "train", "--deterministic", "--config", CFG, "--data", data, "--out", out, *extra)
    assert r.returncode == 0, r.stderr
    return json.load(open(os.path.join(out, "manifest.json")))


def _hashes(m):
    return [e["params_sha256"] for e in m["epochs"]]


def test_determinism(bindir, data, tmp_path):
    a = _train(bindir, data, str(tmp_path / "a"), "--seed", "42", "--threads", "1")
    b = _train(bindir, data, str(tmp_path / "b"), "--seed", "42", "--threads", "2")
    c = _train(bindir, data, str(tmp_path / "c"), "--seed", "43")
    assert len(_hashes(a)) == 10
    assert _hashes(a) == _hashes(b)  # every epoch, 1 vs 2 threads
    assert _hashes(a)[0] != _hashes(c)[0]  # another seed: another run from epoch 0
    assert open(tmp_path / "a" / "model.bin", "rb").read() == open(tmp_path / "b" / "model.bin", "rb").read()
    assert [e["lr"] for e in a["epochs"]][:2] == [0.0, 0.005 / 9]  # Cellpose's warm-up
    assert a["environment"]["threads"] == 1 and len(a["inputs"]) == 12
    png = open(tmp_path / "a" / "loss.png", "rb").read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_resume_after_kill(bindir, data, tmp_path):
    full = _train(bindir, data, str(tmp_path / "full"), "--seed", "7", "--n-epochs", "60")
    out = str(tmp_path / "killed")
    man = os.path.join(out, "manifest.json")
    done = train_killed(bindir, ["--config", CFG, "--data", data, "--seed", "7", "--n-epochs", "60"], out)
    assert 3 <= done < 60, f"killed after {done} epochs"
    r = run_prog(bindir, "train", "--config", CFG, "--data", data, "--seed", "7", "--n-epochs", "60", "--resume", out)
    assert r.returncode == 0, r.stderr
    resumed = json.load(open(man))
    assert _hashes(resumed) == _hashes(full)
    losses = [e["train_loss"] for e in full["epochs"]]
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses  # it learns
    assert open(os.path.join(out, "model.bin"), "rb").read() == open(tmp_path / "full" / "model.bin", "rb").read()
    # resuming with another seed is refused
    r = run_prog(bindir, "train", "--config", CFG, "--data", data, "--seed", "8", "--n-epochs", "60", "--resume", out)
    assert r.returncode == 1 and "seed" in r.stderr


def _bad(bindir, tmp_path, setup):
    d = tmp_path / "bad"
    d.mkdir()
    setup(d)
    r = run_prog(bindir, "train", "--config", CFG, "--data", str(d), "--out", str(tmp_path / "out"))
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0 and len(lines) == 1, r.stderr
    assert not (tmp_path / "out").exists()  # no partial output, not even the folder
    return lines[0]


def test_bad_data(bindir, tmp_path):
    img = (np.arange(64 * 64) % 251).astype(np.uint8).reshape(64, 64)
    lab = np.zeros((64, 64), np.uint16)
    lab[5:20, 5:20] = 1
    line = _bad(bindir, tmp_path, lambda d: tifffile.imwrite(d / "a.tif", img))
    assert "a.tif" in line and "no mask" in line
    (tmp_path / "bad").rename(tmp_path / "bad1")
    line = _bad(bindir, tmp_path, lambda d: (tifffile.imwrite(d / "a.tif", img),
                                              tifffile.imwrite(d / "a_masks.tif", lab[:32])))
    assert "a_masks.tif" in line
    (tmp_path / "bad").rename(tmp_path / "bad2")
    line = _bad(bindir, tmp_path, lambda d: None)
    assert "bad" in line
    r = run_prog(bindir, "train", "--config", CFG, "--data", str(tmp_path), "--out", str(tmp_path / "o"),
                 "--optimizer", "adam")
    assert r.returncode == 2 and "adam" in r.stderr and len(r.stderr.strip().splitlines()) == 1
