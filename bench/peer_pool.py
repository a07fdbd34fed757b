"""PyTorch peer of bench/bench_pool.c: max_pool2d(2, 2) with indices and its
backward, nearest upsample x2 and its backward, Cellpose's make_style and its
backward, exact GELU and its backward, at the same shapes and keys, PyTorch
CPU defaults, the thread count from --threads, best of REPS as bench_pool.c."""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_util import bench, setup  # noqa: E402

REPS = 20  # as bench_pool.c
LEVELS = [(32, 224), (64, 112), (128, 56), (256, 28)]  # (C, S), N = 8: as bench_pool.c


def make_style(x0):
    """Cellpose v3 CPnet.make_style."""
    style = F.avg_pool2d(x0, kernel_size=(x0.shape[-2], x0.shape[-1])).flatten(1)
    return style / torch.sum(style ** 2, axis=1, keepdim=True) ** .5


def level(N, C, S):
    x = torch.rand(N, C, S, S) * 2 - 1
    q = torch.rand(N, C, S // 2, S // 2) * 2 - 1
    gq = torch.rand(N, C, S // 2, S // 2) * 2 - 1
    g = torch.rand(N, C, S, S) * 2 - 1
    key = f"n{N}_c{C}_{S}"
    ukey = f"n{N}_c{C}_{S // 2}to{S}"
    with torch.no_grad():
        # PyTorch: nn.MaxPool2d(2, 2) in training computes the indices too
        bench(f"maxpool_fwd_{key}", lambda: F.max_pool2d_with_indices(x, 2, 2), reps=REPS)
        _, idx = F.max_pool2d_with_indices(x, 2, 2)
        bench(f"maxpool_bwd_{key}", lambda: torch.ops.aten.max_pool2d_with_indices_backward(
            gq, x, [2, 2], [2, 2], [0, 0], [1, 1], False, idx), reps=REPS)
        bench(f"upsample_fwd_{ukey}", lambda: F.interpolate(q, scale_factor=2, mode="nearest"), reps=REPS)
        bench(f"upsample_bwd_{ukey}", lambda: torch.ops.aten.upsample_nearest2d_backward(
            g, [S, S], [N, C, S // 2, S // 2], 2.0, 2.0), reps=REPS)
        bench(f"style_fwd_{key}", lambda: make_style(x), reps=REPS)
    xr = x.clone().requires_grad_(True)
    st = make_style(xr)  # the graph whose backward is timed
    gst = torch.rand(N, C) * 2 - 1
    bench(f"style_bwd_{key}", lambda: torch.autograd.grad(st, xr, gst, retain_graph=True), reps=REPS)


def main():
    setup()
    torch.manual_seed(0)
    for C, S in LEVELS:
        level(8, C, S)
    x = torch.rand(1 << 22) * 8 - 4
    g = torch.rand(1 << 22) * 2 - 1
    with torch.no_grad():
        bench("gelu_fwd_4M", lambda: F.gelu(x, approximate="none"), reps=REPS)
        bench("gelu_bwd_4M", lambda: torch.ops.aten.gelu_backward(g, x, approximate="none"), reps=REPS)


if __name__ == "__main__":
    main()
