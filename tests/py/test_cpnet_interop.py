"""Model files between cellpose.c and the REAL Cellpose (pip cellpose 3.1.1.3):
our model.bin loads into Cellpose's CPnet with load_state_dict(strict=True),
bit for bit; nets/convert_pth.py turns it back into a torch.save file that
Cellpose's own CPnet.load_model reads; bad input to the converter gives one
line and exit 1."""
import os
import subprocess
import sys

import pytest
import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CONVERT = os.path.join(ROOT, "nets", "convert_pth.py")


def _ref(name):
    d = os.environ.get("CP_REF_DIR", os.path.join(ROOT, "build", "ref"))
    p = os.path.join(d, name)
    if not os.path.exists(p):
        pytest.fail(f"{p} missing: tests/ref/cpnet.py makes it (run_all.sh runs it first)")
    return p


def _cpnet():
    from cellpose.resnet_torch import CPnet
    return CPnet([2, 32, 64, 128, 256], 3, 3, mkldnn=False)


def test_our_file_loads_strict_and_bitwise(test_out):
    from safetensors.torch import load_file
    ours = os.path.join(test_out, "cpnet", "roundtrip.bin")
    assert os.path.exists(ours), "tests/test_cpnet.c writes it (test_model_file_round_trip)"
    sd = load_file(ours)
    net = _cpnet()
    net.load_state_dict(sd, strict=True)  # every name, shape present; nothing extra
    orig = torch.load(_ref("cpnet_init.pth"))
    import safetensors_np  # header order (load_file returns the keys sorted)
    assert list(safetensors_np.load(ours)[0].keys()) == list(orig.keys())  # state_dict order kept
    for k, v in orig.items():
        assert v.dtype == sd[k].dtype and torch.equal(v, sd[k]), k


def test_converter_back_to_pth_loads_in_cellpose(test_out, tmp_path):
    ours = os.path.join(test_out, "cpnet", "roundtrip.bin")
    pth = str(tmp_path / "model_from_c")
    r = subprocess.run([sys.executable, CONVERT, "--to-pth", ours, pth], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    net = _cpnet()
    net.load_model(pth, device=torch.device("cpu"))  # Cellpose's own loader
    orig = torch.load(_ref("cpnet_init.pth"))
    for k, v in net.state_dict().items():
        assert torch.equal(v, orig[k]), k


def test_converter_bad_input_one_line(tmp_path):
    bad = tmp_path / "not_a_model"
    bad.write_bytes(b"garbage" * 10)
    r = subprocess.run([sys.executable, CONVERT, str(bad), str(tmp_path / "out.bin")], capture_output=True, text=True)
    assert r.returncode == 1
    assert len(r.stderr.strip().splitlines()) == 1 and "convert_pth:" in r.stderr
    assert not (tmp_path / "out.bin").exists()


def test_inspect_checks_model_against_config(bindir, tmp_path):
    from conftest import run_prog
    import safetensors_np
    good = _ref("cpnet_init.bin")
    r = run_prog(bindir, "inspect", good, "--config", os.path.join(ROOT, "configs", "cyto.yaml"))
    assert r.returncode == 0 and "6600843 trainable values" in r.stdout, r.stderr
    items, meta = safetensors_np.load(good)
    items = list(items.items())
    bad = {
        "wrong_nbase": (good, "configs/tiny.yaml", "has shape"),
        "missing": ([kv for kv in items if kv[0] != "output.2.bias"], "configs/cyto.yaml", "is missing"),
        "wrong_dtype": ([(k, v.astype("float64") if k == "output.2.bias" else v) for k, v in items],
                        "configs/cyto.yaml", "dtype F64"),
        "extra": (items + [("extra.weight", items[-1][1])], "configs/cyto.yaml", "unexpected tensor"),
    }
    for name, (content, cfg, words) in bad.items():
        path = content if isinstance(content, str) else str(tmp_path / (name + ".bin"))
        if not isinstance(content, str):
            safetensors_np.save(path, content)
        r = run_prog(bindir, "inspect", path, "--config", os.path.join(ROOT, cfg))
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 1 and r.stdout == "" and len(lines) == 1, (name, r.stderr)
        assert path in lines[0] and words in lines[0], (name, lines[0])
