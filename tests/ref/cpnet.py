"""Reference for tests/test_cpnet.c: the REAL Cellpose CPnet (pip package
cellpose 3.1.1.3, cellpose.resnet_torch) on Debian's PyTorch.

Writes cpnet.safetensors with:
  x[3,2,40,48], lbl[3,3,40,48]      a batch (odd-ish size, divisible by 8)
  eval.y, eval.style                 eval-mode forward
  train.y, train.style, train.loss   training-mode forward + Cellpose's loss
  grad.<name>                        every parameter's step-0 gradient
  after.<name>                       BN running stats after that forward
  traj.x, traj.lbl [S,...]           S batches, traj.loss[S]: S AdamW steps
  final.<name>                       the state after those steps
  f64.*                              the same computations in float64 (the
                                     yardstick: our fp32 error vs f64 must be
                                     of the size of PyTorch's own fp32 error)
and cpnet_init.bin: the initial state_dict, saved with torch.save and turned
into model.bin by nets/convert_pth.py (the converter is exercised here)."""
import os
import sys

import torch

from common import out_dir, save

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "nets"))
sys.path.insert(0, os.path.join(ROOT, "build", "pydeps"))
import convert_pth  # noqa: E402
from cellpose.resnet_torch import CPnet  # noqa: E402

NBASE = [2, 32, 64, 128, 256]
N, H, W = 3, 40, 48
STEPS = 20
LR, WD = 1e-3, 1e-5


def cellpose_loss(y, lbl):
    # Cellpose v3 train._loss_fn_seg (CELLPOSE.md 4.6), transcribed
    veci = 5.0 * lbl[:, 1:]
    flow = torch.nn.functional.mse_loss(y[:, :2], veci) / 2.0
    prob = torch.nn.functional.binary_cross_entropy_with_logits(y[:, -1], (lbl[:, 0] > 0.5).float())
    return flow + prob


def batch(g):
    x = torch.rand(N, 2, H, W, generator=g) * 2 - 0.5
    cell = (torch.rand(N, 1, H, W, generator=g) > 0.5).float()
    ang = torch.rand(N, 1, H, W, generator=g) * 6.283
    lbl = torch.cat([cell, cell * torch.sin(ang), cell * torch.cos(ang)], 1)
    return x, lbl


def make_net():
    torch.manual_seed(0)
    net = CPnet(list(NBASE), 3, 3, mkldnn=False)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # non-trivial BatchNorm state so eval mode is tested
        for name, t in net.state_dict().items():
            if name.endswith("running_mean"):
                t.copy_(torch.rand(t.shape, generator=g) * 0.2 - 0.1)
            elif name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif name.endswith(".0.weight") and t.dim() == 1:
                t.copy_(1 + 0.1 * (torch.rand(t.shape, generator=g) - 0.5))
            elif name.endswith(".0.bias") and t.dim() == 1:
                t.copy_(0.1 * (torch.rand(t.shape, generator=g) - 0.5))
    return net


def step0(net, x, lbl, res, prefix):
    net.eval()
    with torch.no_grad():
        y, style, _ = net(x)
    res[prefix + "eval.y"], res[prefix + "eval.style"] = y, style
    net.train()
    y, style, _ = net(x)
    loss = cellpose_loss(y, lbl)
    loss.backward()
    res[prefix + "train.y"], res[prefix + "train.style"], res[prefix + "train.loss"] = y, style, loss.reshape(1)
    for n, p in net.named_parameters():
        if p.grad is not None:
            res[prefix + "grad." + n] = p.grad
    for n, t in net.state_dict().items():
        if "running" in n:
            res[prefix + "after." + n] = t


def trajectory(net, batches, res, prefix):
    net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=WD)
    losses = []
    for xb, lb in batches:
        opt.zero_grad()
        loss = cellpose_loss(net(xb)[0], lb)
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    res[prefix + "traj.loss"] = torch.stack(losses)
    for n, t in net.state_dict().items():
        if t.is_floating_point():
            res[prefix + "final." + n] = t


def main():
    out = out_dir()
    torch.set_num_threads(2)
    torch.backends.mkldnn.enabled = True  # the default Cellpose runs with (common.py turns it off)
    net = make_net()
    pth = os.path.join(out, "cpnet_init.pth")
    torch.save(net.state_dict(), pth)
    convert_pth.pth_to_bin(pth, os.path.join(out, "cpnet_init.bin"))
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
    save("cpnet", res, out)


if __name__ == "__main__":
    main()
