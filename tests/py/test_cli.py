"""The command-line contract of every program: --help exits 0 and prints
usage, --version names the version, commit and backends, unknown options and
missing arguments give one line on stderr and exit 2. And the malformed-file
contract: each bad input gives exactly one line on stderr naming the file,
a non-zero exit and nothing on stdout."""
import os
import struct

import numpy as np
import pytest
import tifffile
from conftest import run_prog

PROGRAMS = ["train", "infer", "compare", "eval", "inspect"]


@pytest.mark.parametrize("prog", PROGRAMS)
def test_help_and_version(bindir, prog):
    r = run_prog(bindir, prog, "--help")
    assert r.returncode == 0 and r.stdout.startswith("usage: ") and "--version" in r.stdout
    r = run_prog(bindir, prog, "--version")
    assert r.returncode == 0
    assert "commit: " in r.stdout and "backends: cpu" in r.stdout


@pytest.mark.parametrize("prog", PROGRAMS)
def test_unknown_option(bindir, prog):
    r = run_prog(bindir, prog, "--no-such-flag", "x", "y")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "--no-such-flag" in lines[0], r.stderr


def test_missing_value_and_arguments(bindir):
    r = run_prog(bindir, "train", "--config")
    assert r.returncode == 2 and "needs a value" in r.stderr
    r = run_prog(bindir, "infer", "model.bin")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1


def _good_st(path):
    import safetensors_np
    safetensors_np.save(path, [("w", np.ones((4, 4), np.float32)), ("b", np.zeros(4, np.float32))])
    return open(path, "rb").read()


def _malformed(tmp):
    """name -> (path, words the error line must contain)."""
    cases = {}

    def put(name, data, *words):
        p = os.path.join(tmp, name)
        with open(p, "wb") as f:
            f.write(data)
        cases[name] = (p, words)

    good = _good_st(os.path.join(tmp, "good.bin"))
    put("truncated.bin", good[:len(good) - 10], "past the end")
    put("header_past_eof.bin", struct.pack("<Q", 10**6) + b"{}", "runs past the end")
    put("header_zero.bin", struct.pack("<Q", 0) + b"{}", "header length 0")
    hdr = b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}'
    put("overlap.bin", struct.pack("<Q", len(hdr)) + hdr + bytes(12), "overlap")
    hdr = b'{"a":{"dtype":"Q7","shape":[1],"data_offsets":[0,4]}}'
    put("bad_dtype.bin", struct.pack("<Q", len(hdr)) + hdr + bytes(4), "unknown dtype")
    put("empty.bin", b"", "truncated")
    # images
    tif = os.path.join(tmp, "ok.tif")
    tifffile.imwrite(tif, np.arange(64 * 64, dtype=np.uint16).reshape(64, 64))
    raw = open(tif, "rb").read()
    put("corrupt.tif", raw[:8] + bytes(len(raw) - 8))
    put("truncated.tif", raw[: len(raw) // 3])
    nan = np.ones((8, 8), np.float32)
    nan[3, 5] = np.nan
    p = os.path.join(tmp, "nan.tif")
    tifffile.imwrite(p, nan)
    cases["nan.tif"] = (p, ("NaN",))
    put("garbage.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    # configs
    put("wrong_type.yaml", b"net:\n  type: cpnet\n  nbase: [2, 32, 64]\ntrain:\n  batch_size: eight\n",
        "batch_size", ":5")
    put("unknown_key.yaml", b"net:\n  type: cpnet\n  nbase: [2, 32, 64]\ntrain:\n  learnig_rate: 0.1\n",
        "learnig_rate", "learning_rate")
    put("missing_required.yaml", b"net:\n  type: cpnet\n", "nbase")
    cases["missing.tif"] = (os.path.join(tmp, "does_not_exist.tif"), ())
    return cases


def test_malformed_files_one_line_each(bindir, tmp_path):
    cases = _malformed(str(tmp_path))
    assert len(cases) >= 10
    for name, (path, words) in cases.items():
        r = run_prog(bindir, "inspect", path)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 1, f"{name}: exit {r.returncode}, stderr {r.stderr!r}"
        assert r.stdout == "", f"{name}: partial output {r.stdout!r}"
        assert len(lines) == 1, f"{name}: {len(lines)} lines: {r.stderr!r}"
        assert path in lines[0], f"{name}: line does not name the file: {lines[0]}"
        for w in words:
            assert w in lines[0], f"{name}: {lines[0]!r} lacks {w!r}"


def test_absurd_size_refused(bindir, tmp_path):
    p = str(tmp_path / "big.tif")
    tifffile.imwrite(p, np.zeros((300, 400), np.uint8))
    r = run_prog(bindir, "inspect", p, "--max-pixels", "100000")
    assert r.returncode == 1 and "100000" in r.stderr and p in r.stderr
