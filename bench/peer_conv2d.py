"""PyTorch peer of bench/bench_conv2d.c: F.conv2d forward and its backward
(grad of input, weight and bias) at the same CPnet shapes and keys, PyTorch
CPU defaults (mkldnn on), the thread count from --threads."""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_util import bench, setup  # noqa: E402

# (N, C, OC, H, K): as bench_conv2d.c
SHAPES = [
    (8, 2, 32, 224, 3), (8, 32, 32, 224, 3), (8, 64, 64, 112, 3), (8, 128, 128, 56, 3),
    (8, 256, 256, 28, 3), (8, 2, 32, 224, 1), (8, 32, 64, 112, 1), (8, 64, 128, 56, 1),
    (8, 128, 256, 28, 1), (8, 32, 3, 224, 1),
]


def main():
    setup()
    torch.manual_seed(0)
    for N, C, OC, H, K in SHAPES:
        x = torch.randn(N, C, H, H, requires_grad=True)
        w = torch.randn(OC, C, K, K, requires_grad=True)
        b = torch.randn(OC, requires_grad=True)
        g = torch.randn(N, OC, H, H)
        key = f"conv2d_k{K}_c{C}_oc{OC}_{H}"
        with torch.no_grad():
            bench(key + "_fwd", lambda: F.conv2d(x, w, b, padding=K // 2), reps=5)
        out = F.conv2d(x, w, b, padding=K // 2)  # PyTorch: the graph whose backward is timed
        bench(key + "_bwd", lambda: torch.autograd.grad(out, (x, w, b), g, retain_graph=True), reps=5)


if __name__ == "__main__":
    main()
