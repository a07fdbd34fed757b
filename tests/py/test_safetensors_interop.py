"""Model files across the language boundary, both directions, against two
writers/readers nobody on this project's C side wrote: the real `safetensors`
package (pip) and a numpy transcription of the layout (tests/ref)."""
import hashlib
import os

import numpy as np
from conftest import inspect_json

import safetensors_np


def _tensors():
    rng = np.random.default_rng(5)
    return [
        ("downsample.down.res_down_0.conv.conv_0.2.weight", rng.standard_normal((32, 2, 3, 3)).astype(np.float32)),
        ("downsample.down.res_down_0.conv.conv_0.0.num_batches_tracked", np.array(7, dtype=np.int64)),
        ("diam_mean", np.array([30.0], dtype=np.float32)),
        ("f64", rng.standard_normal(5)),
        ("i32", np.arange(-3, 9, dtype=np.int32).reshape(3, 4)),
        ("u8", np.arange(200, dtype=np.uint8)),
        ("empty", np.zeros((0, 4), dtype=np.float32)),
    ]


def _check_inspect(bindir, path, tensors):
    info = inspect_json(bindir, path)
    assert info["kind"] == "safetensors"
    got = {t["name"]: t for t in info["tensors"]}
    assert set(got) == {n for n, _ in tensors}
    for name, a in tensors:
        t = got[name]
        assert t["shape"] == list(a.shape), name
        assert t["sha256"] == hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest(), name
    return info


def test_numpy_written_file_reads_in_c(bindir, tmp_path):
    p = str(tmp_path / "np.safetensors")
    safetensors_np.save(p, _tensors(), {"step": "12", "net": "cpnet"})
    info = _check_inspect(bindir, p, _tensors())
    assert info["metadata"] == {"step": "12", "net": "cpnet"}
    # header order is the order we wrote (state_dict order matters to us)
    assert [t["name"] for t in info["tensors"]] == [n for n, _ in _tensors()]


def test_real_safetensors_package_file_reads_in_c(bindir, tmp_path):
    from safetensors.numpy import save_file
    p = str(tmp_path / "st.safetensors")
    save_file(dict(_tensors()), p, metadata={"format": "np"})
    info = _check_inspect(bindir, p, _tensors())
    assert info["metadata"] == {"format": "np"}


def _expected_c_written():
    i = np.arange(60, dtype=np.float32)
    return {
        "a": (0.5 * i - 7).reshape(3, 4, 5).astype(np.float32),
        "n": np.array(123456789012, dtype=np.int64),
        "d": np.arange(7) / 3.0,
        "u": (25 * np.arange(10)).astype(np.uint8),
        "i32": -np.arange(4, dtype=np.int32).reshape(2, 2),
        "e": np.zeros((0, 3), dtype=np.float32),
    }


def test_c_written_file_reads_in_python(test_out):
    p = os.path.join(test_out, "safetensors", "c_written.safetensors")
    assert os.path.exists(p), f"{p} missing: tests/test_safetensors.c writes it when CP_ST_OUT is set"
    want = _expected_c_written()
    from safetensors.numpy import load_file
    from safetensors import safe_open
    for got in (load_file(p), safetensors_np.load(p)[0]):
        assert set(got) == set(want)
        for k, v in want.items():
            assert got[k].dtype == v.dtype and got[k].shape == v.shape, k
            assert np.array_equal(got[k], v), k
    with safe_open(p, framework="np") as f:
        assert f.metadata() == {"format": "pt", "note": "written by cellpose.c"}
    # and the C-written file is byte-identical to numpy writing the same layout
    # in the same order with the same metadata
    meta = {"format": "pt", "note": "written by cellpose.c"}
    alt = os.path.join(test_out, "safetensors", "np_same.safetensors")
    safetensors_np.save(alt, list(want.items()), meta)
    assert open(alt, "rb").read() == open(p, "rb").read()
