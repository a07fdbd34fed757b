"""PyTorch peer of bench_cpnet.c: the real Cellpose CPnet (pip cellpose
3.1.1.3) training step (train-mode forward, Cellpose loss, backward, AdamW)
and eval forward at batch 8, 224 x 224, on the CPU, default PyTorch settings
(mkldnn on), same thread count."""
import os
import sys

import torch

from peer_util import bench, setup

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "build", "pydeps"))
from cellpose.resnet_torch import CPnet  # noqa: E402


def cellpose_loss(y, lbl):
    # Cellpose v3 train._loss_fn_seg (as tests/ref/cpnet.py)
    flow = torch.nn.functional.mse_loss(y[:, :2], 5.0 * lbl[:, 1:]) / 2.0
    return flow + torch.nn.functional.binary_cross_entropy_with_logits(y[:, -1], (lbl[:, 0] > 0.5).float())


def main():
    setup()
    torch.manual_seed(0)
    net = CPnet([2, 32, 64, 128, 256], 3, 3, mkldnn=False)
    opt = torch.optim.AdamW(net.parameters(), lr=0.005, weight_decay=1e-5)
    x = torch.rand(8, 2, 224, 224) * 2 - 0.5
    lbl = torch.rand(8, 3, 224, 224) * 2 - 1

    def step():
        net.train()
        opt.zero_grad()
        loss = cellpose_loss(net(x)[0], lbl)
        loss.backward()
        opt.step()

    def fwd():
        net.eval()
        with torch.no_grad():
            net(x)

    bench("cpnet_train_step_n8_224", step, reps=3)
    bench("cpnet_eval_fwd_n8_224", fwd, reps=3)


if __name__ == "__main__":
    main()
