"""PyTorch side of bench/bench_norm.c: the same ops, shapes and keys.

BN: aten.native_batch_norm (training) and aten.native_batch_norm_backward,
the kernels nn.BatchNorm2d runs. LN: aten.native_layer_norm and
aten.native_layer_norm_backward (F.layer_norm). LN2d: SAM's LayerNorm2d
module (composite ops), backward by autograd of its forward graph.
"""
import torch

from peer_util import bench, setup


def bn(N, C, S):
    x = torch.rand(N, C, S, S) * 5 - 2
    g = torch.rand(N, C, S, S) * 2 - 1
    w, b = torch.rand(C) + 0.5, torch.rand(C) * 2 - 1
    rm, rv = torch.zeros(C), torch.ones(C)
    key = f"n{N}_c{C}_{S}x{S}"
    bench(f"bn_fwd_train_{key}", lambda: torch.native_batch_norm(x, w, b, rm, rv, True, 0.05, 1e-5))
    _, mean, rstd = torch.native_batch_norm(x, w, b, rm, rv, True, 0.05, 1e-5)
    bench(f"bn_bwd_{key}", lambda: torch.ops.aten.native_batch_norm_backward(
        g, x, w, rm, rv, mean, rstd, True, 1e-5, [True, True, True]))


def ln(M, D):
    x = torch.rand(M, D) * 5 - 2
    g = torch.rand(M, D) * 2 - 1
    w, b = torch.rand(D) + 0.5, torch.rand(D) * 2 - 1
    key = f"m{M}_d{D}"
    bench(f"ln_fwd_{key}", lambda: torch.native_layer_norm(x, (D,), w, b, 1e-6), reps=10)
    _, mean, rstd = torch.native_layer_norm(x, (D,), w, b, 1e-6)
    bench(f"ln_bwd_{key}", lambda: torch.ops.aten.native_layer_norm_backward(
        g, x, [D], mean, rstd, w, b, [True, True, True]), reps=10)


def ln2d_forward(x, w, b, eps=1e-6):
    u = x.mean(1, keepdim=True)
    s = (x - u).pow(2).mean(1, keepdim=True)
    x = (x - u) / torch.sqrt(s + eps)
    return w[:, None, None] * x + b[:, None, None]


def ln2d(N, C, S):
    x = (torch.rand(N, C, S, S) * 5 - 2).requires_grad_(True)
    g = torch.rand(N, C, S, S) * 2 - 1
    w = (torch.rand(C) + 0.5).requires_grad_(True)
    b = (torch.rand(C) * 2 - 1).requires_grad_(True)
    key = f"n{N}_c{C}_{S}x{S}"
    with torch.no_grad():
        bench(f"ln2d_fwd_{key}", lambda: ln2d_forward(x, w, b), reps=10)
    out = ln2d_forward(x, w, b)
    bench(f"ln2d_bwd_{key}", lambda: torch.autograd.grad(out, (x, w, b), g, retain_graph=True), reps=10)


def main():
    setup()
    torch.backends.mkldnn.enabled = False  # the native CPU kernels, as in the references
    for C, S in ((32, 224), (64, 112), (128, 56), (256, 28)):
        bn(8, C, S)
    ln(1024, 1024)
    ln2d(8, 256, 32)


if __name__ == "__main__":
    main()
