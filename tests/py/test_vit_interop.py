"""Model files between cellpose.c and the REAL Cellpose-SAM Transformer (pip
cellpose 4.0.9 + segment-anything 1.0 in build/pydeps-v4): our ViT model.bin
(written by tests/test_vit.c) loads into Cellpose's Transformer with
load_state_dict(strict=True), bit for bit and in state_dict order;
nets/convert_pth.py turns it back into a torch.save file that Cellpose's own
Transformer.load_model reads; a ViT .pth converts with its order kept.

Cellpose 4 cannot share this interpreter with cellpose 3 (build/pydeps, used
by the other tests): each check runs in a child python that imports
tests/ref/vit.py (which puts build/pydeps-v4 first on its own sys.path)."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CONVERT = os.path.join(ROOT, "nets", "convert_pth.py")


def _ref(name):
    d = os.environ.get("CP_REF_DIR", os.path.join(ROOT, "build", "ref"))
    p = os.path.join(d, name)
    if not os.path.exists(p):
        pytest.fail(f"{p} missing: tests/ref/vit.py makes it (run_all.sh runs it first)")
    return p


def _child(code):
    """Run `code` after `import vit` (tests/ref/vit.py) in a fresh python."""
    env = dict(os.environ, PYTHONPATH="")
    r = subprocess.run([sys.executable, "-c", "import sys; sys.argv = ['x']; import vit\n" + code],
                       cwd=os.path.join(ROOT, "tests", "ref"), capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def test_our_file_loads_strict_and_bitwise(test_out):
    ours = os.path.join(test_out, "vit", "roundtrip.bin")
    assert os.path.exists(ours), "tests/test_vit.c writes it (test_model_files)"
    out = _child(f"""
import torch, safetensors_np
items, meta = safetensors_np.load({ours!r})
orig = torch.load({_ref("vit_init.pth")!r})
assert list(items.keys()) == list(orig.keys()), "state_dict order"
net = vit.make_net()
net.load_state_dict({{k: torch.from_numpy(v) for k, v in items.items()}}, strict=True)
for k, v in orig.items():
    assert v.dtype == net.state_dict()[k].dtype and torch.equal(v, net.state_dict()[k]), k
print("OK", len(items))
""")
    assert "OK 56" in out


def test_converter_back_to_pth_loads_in_cellpose(test_out, tmp_path):
    ours = os.path.join(test_out, "vit", "roundtrip.bin")
    pth = str(tmp_path / "model_from_c")
    r = subprocess.run([sys.executable, CONVERT, "--to-pth", ours, pth], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = _child(f"""
import torch
net = vit.make_net()
with torch.no_grad():
    for p in net.parameters():
        p.zero_()
net.load_model({pth!r}, device=torch.device("cpu"))  # Cellpose's own loader (strict=False)
orig = torch.load({_ref("vit_init.pth")!r})
for k, v in net.state_dict().items():
    assert torch.equal(v, orig[k]), k
print("OK")
""")
    assert "OK" in out


def test_converter_refuses_non_cellpose_dict(tmp_path):
    import torch
    bad = tmp_path / "other.pth"
    torch.save({"W2": torch.zeros(1), "foo": torch.zeros(2)}, bad)
    r = subprocess.run([sys.executable, CONVERT, str(bad), str(tmp_path / "out.bin")], capture_output=True, text=True)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1
    assert "not a Cellpose-SAM state_dict" in r.stderr and not (tmp_path / "out.bin").exists()
