"""A model.bin (ours, safetensors with Cellpose's state_dict names) loaded
into the real Cellpose 3.1.1.3 CellposeModel, for the whole-pipeline parity
test (tests/py/test_infer_parity.py) and the inference benchmark
(bench/infer_vs_cellpose.py). Not a reference script: tests/run_all.sh skips
it.

- nbase is read from the tensor shapes; the CPnet is Cellpose's own
  (resnet_torch.CPnet) with the file's weights; diam_mean/diam_labels are set
  from the file as CellposeModel.__init__ sets them after loading a model.
- Cellpose's run_net stores each tile's style vector in a 256-wide array, so a
  net whose last level is narrower gets its style zero-padded to 256 on the
  way out (the style enters neither the flows nor the masks).
- Debian's torch 1.13 refuses the int32 index tensor that
  dynamics.get_masks_torch builds from p_final.int(); that one call gets the
  same positions widened to int64 (Cellpose's arithmetic is unchanged)."""
import os
import sys

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "build", "pydeps"))

import torch  # noqa: E402
from cellpose import dynamics, models, resnet_torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

if not getattr(dynamics, "_cpc_patched", False):
    _orig = dynamics.get_masks_torch
    dynamics.get_masks_torch = lambda pt, *a, **k: _orig(pt.long(), *a, **k)
    dynamics._cpc_patched = True


class StylePad(torch.nn.Module):
    """The CPnet, its style output zero-padded to run_net's 256 columns."""

    def __init__(self, net):
        super().__init__()
        self.net, self.device, self.mkldnn, self.nout = net, net.device, net.mkldnn, net.nout

    def forward(self, X):
        y, style = self.net(X)[:2]
        if style.shape[1] < 256:
            style = torch.cat([style, torch.zeros(style.shape[0], 256 - style.shape[1])], 1)
        return y, style


def load(model_bin, mkldnn=None):
    """CellposeModel (CPU) running the weights of model_bin."""
    sd = load_file(model_bin)
    nbase = [int(sd["downsample.down.res_down_0.conv.conv_0.2.weight"].shape[1])]
    k = 0
    while f"downsample.down.res_down_{k}.proj.1.weight" in sd:
        nbase.append(int(sd[f"downsample.down.res_down_{k}.proj.1.weight"].shape[0]))
        k += 1
    m = models.CellposeModel(gpu=False, pretrained_model=False, diam_mean=float(sd["diam_mean"][0]), nchan=2)
    mk = m.mkldnn if mkldnn is None else mkldnn
    net = resnet_torch.CPnet(nbase, 3, sz=3, mkldnn=mk, max_pool=True, diam_mean=m.diam_mean)
    net.load_state_dict(sd)
    net.eval()
    m.net, m.nbase, m.mkldnn = StylePad(net), nbase, mk
    m.diam_mean = net.diam_mean.data.cpu().numpy()[0]
    m.diam_labels = net.diam_labels.data.cpu().numpy()[0]
    return m
