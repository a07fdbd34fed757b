"""Reference for tests/test_vit.c: the REAL Cellpose-SAM `Transformer`
(pip cellpose 4.0.9, cellpose/vit_sam.py) around the REAL segment-anything
`ImageEncoderViT` (pip segment-anything 1.0), on Debian's PyTorch, built small.

Cellpose builds its encoder with `sam_model_registry[backbone]`; here the
registry gets one more entry, "tiny", that calls ImageEncoderViT exactly as
SAM's build_sam._build_sam does (img_size 1024, patch 16, LayerNorm eps 1e-6,
qkv_bias, use_rel_pos, window 14, out_chans 256) but with embed_dim 32,
depth 3, 2 heads and global attention built in block 1. Then Cellpose's own
Transformer(backbone="tiny", ps=8, nout=3, bsize=64, rdrop=0) does what it
does for vit_l: patch conv 16 -> 8, pos_embed subsampled to 8 x 8 tokens,
W2, window_size 0 in every block. So the rel-pos tables keep cpsam's sizes
(27 rows, 127 in the global block) and are interpolated to 2*8-1 = 15 rows
in every block, up and down, as in cpsam.

Writes vit.safetensors with:
  x[2,3,64,64], lbl[2,3,64,64]     a batch
  y, loss                          forward (train mode, rdrop 0) + Cellpose's
                                   v4 loss (cellpose.train._loss_fn_seg)
  grad.<name>                      every trainable parameter's step-0
                                   gradient (rel_pos_h/w included)
  traj.x, traj.lbl [S,...]         S batches; traj.loss[S]: S AdamW steps
  final.<name>                     the parameters after those steps
  f64.*                            the same in float64 (the yardstick)
and vit_init.bin: the initial state_dict, saved with torch.save and turned
into model.bin by nets/convert_pth.py (the converter is exercised here).

Needs build/pydeps-v4 (cellpose 4 and segment-anything, see the Makefile's
deps); it goes FIRST on sys.path here only, since build/pydeps holds
cellpose 3. segment_anything's package __init__ imports its predictor,
which imports torchvision (not installed, not used by the encoder): a stub
module stands in for it."""
import functools
import importlib.abc
import importlib.machinery
import os
import sys
import types

import torch

from common import out_dir, save

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "nets"))
sys.path.insert(0, os.path.join(ROOT, "build", "pydeps"))
sys.path.insert(0, os.path.join(ROOT, "build", "pydeps-v4"))


class _NoTorchvision(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """torchvision.* -> empty modules whose attributes are None."""

    def find_spec(self, name, path, target=None):
        if name == "torchvision" or name.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        m = types.ModuleType(spec.name)
        m.__path__ = []
        m.__getattr__ = lambda attr: None
        return m

    def exec_module(self, module):
        pass


sys.meta_path.insert(0, _NoTorchvision())
import convert_pth  # noqa: E402
import cellpose.vit_sam as vit_sam  # noqa: E402
from cellpose.train import _loss_fn_seg  # noqa: E402
from segment_anything.modeling import ImageEncoderViT  # noqa: E402

DIM, DEPTH, HEADS, GLOBAL = 32, 3, 2, (1,)
PS, BSIZE, NOUT = 8, 64, 3
N = 2
STEPS = 10
LR, WD = 1e-3, 0.1


def tiny_sam(checkpoint=None):
    # segment_anything/build_sam.py _build_sam, image encoder part, small dims
    enc = ImageEncoderViT(depth=DEPTH, embed_dim=DIM, img_size=1024, mlp_ratio=4,
                          norm_layer=functools.partial(torch.nn.LayerNorm, eps=1e-6), num_heads=HEADS,
                          patch_size=16, qkv_bias=True, use_rel_pos=True, global_attn_indexes=GLOBAL,
                          window_size=14, out_chans=256)
    return types.SimpleNamespace(image_encoder=enc)


vit_sam.sam_model_registry["tiny"] = tiny_sam


def make_net():
    torch.manual_seed(0)
    net = vit_sam.Transformer(backbone="tiny", ps=PS, nout=NOUT, bsize=BSIZE, rdrop=0.0)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # SAM zero-inits pos_embed and the tables, LayerNorm is (1, 0): make all non-trivial
        for name, t in net.named_parameters():
            if "rel_pos" in name or "pos_embed" in name:
                t.copy_(0.2 * torch.randn(t.shape, generator=g))
            elif "norm" in name or "neck.1" in name or "neck.3" in name:
                base = 1.0 if name.endswith("weight") else 0.0
                t.copy_(base + 0.1 * (torch.rand(t.shape, generator=g) - 0.5))
    return net


def batch(g):
    x = torch.rand(N, 3, BSIZE, BSIZE, generator=g) * 2 - 0.5
    cell = (torch.rand(N, 1, BSIZE, BSIZE, generator=g) > 0.5).float()
    ang = torch.rand(N, 1, BSIZE, BSIZE, generator=g) * 6.283
    lbl = torch.cat([cell, cell * torch.sin(ang), cell * torch.cos(ang)], 1)
    return x, lbl


def step0(net, x, lbl, res, prefix):
    net.train()  # rdrop 0: no layer drop; the net has no other train/eval difference
    y = net(x)[0]
    loss = _loss_fn_seg(lbl, y, x.device)
    loss.backward()
    res[prefix + "y"], res[prefix + "loss"] = y, loss.reshape(1)
    for n, p in net.named_parameters():
        if p.requires_grad:
            res[prefix + "grad." + n] = p.grad


def trajectory(net, batches, res, prefix):
    net.train()
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=LR, weight_decay=WD)
    losses = []
    for xb, lb in batches:
        opt.zero_grad()
        loss = _loss_fn_seg(lb, net(xb)[0], xb.device)
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    res[prefix + "traj.loss"] = torch.stack(losses)
    for n, p in net.named_parameters():
        if p.requires_grad:
            res[prefix + "final." + n] = p


def main():
    out = out_dir()
    net = make_net()
    pth = os.path.join(out, "vit_init.pth")
    torch.save(net.state_dict(), pth)
    convert_pth.pth_to_bin(pth, os.path.join(out, "vit_init.bin"))
    g = torch.Generator().manual_seed(2)
    x, lbl = batch(g)
    batches = [batch(g) for _ in range(STEPS)]
    res = {"x": x, "lbl": lbl}
    step0(net, x, lbl, res, "")
    step0(make_net().double(), x.double(), lbl.double(), res, "f64.")
    trajectory(make_net(), batches, res, "")
    trajectory(make_net().double(), [(a.double(), b.double()) for a, b in batches], res, "f64.")
    res["traj.x"] = torch.stack([b[0] for b in batches])
    res["traj.lbl"] = torch.stack([b[1] for b in batches])
    res = {k: (v.float() if torch.is_tensor(v) and v.dtype == torch.float64 else v) for k, v in res.items()}
    res["n_tensors"] = len(net.state_dict())
    save("vit", res, out)


if __name__ == "__main__":
    main()
