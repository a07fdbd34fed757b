"""PyTorch side of bench/bench_optim.c: the same steps, shapes and keys.

torch.optim.AdamW(lr=0.005, weight_decay=1e-5) and torch.optim.SGD(lr=0.2,
momentum=0.9, weight_decay=1e-5) stepping one parameter of 6,610,389
elements (CPnet size; default single-tensor path, as Cellpose runs it);
Cellpose v3's _loss_fn_seg forward (no grad) and forward + backward on
y, lbl [8, 3, 224, 224].
"""
import torch

from peer_util import bench, setup

CPNET_PARAMS = 6610389


def loss_fn_seg(lbl, y):
    veci = 5. * lbl[:, 1:]
    loss = torch.nn.functional.mse_loss(y[:, :2], veci) / 2.
    loss2 = torch.nn.functional.binary_cross_entropy_with_logits(y[:, -1], (lbl[:, 0] > 0.5).float())
    return loss + loss2


def steps():
    p = torch.nn.Parameter(torch.rand(CPNET_PARAMS) * 2 - 1)
    p.grad = torch.rand(CPNET_PARAMS) * 2 - 1
    opt = torch.optim.AdamW([p], lr=0.005, weight_decay=1e-5)
    bench("adamw_step_6.6M", opt.step, reps=10)
    opt = torch.optim.SGD([p], lr=0.2, momentum=0.9, weight_decay=1e-5)
    bench("sgd_step_6.6M", opt.step, reps=10)


def loss(N, S):
    y = (torch.rand(N, 3, S, S) * 10 - 5).requires_grad_(True)
    lbl = torch.rand(N, 3, S, S) * 2 - 1
    lbl[:, 0] = (lbl[:, 0] > 0).float()
    key = f"n{N}_{S}x{S}"
    with torch.no_grad():
        bench(f"cellpose_loss_fwd_{key}", lambda: loss_fn_seg(lbl, y), reps=10)
    bench(f"cellpose_loss_fwdbwd_{key}", lambda: loss_fn_seg(lbl, y).backward(), reps=10)


def main():
    setup()
    with torch.no_grad():
        steps()
    loss(8, 224)


if __name__ == "__main__":
    main()
