"""PyTorch reference for kernels/layernorm (tests/test_layernorm.c).

LayerNorm over the last dim, eps 1e-6 as in SAM's ViT blocks, float32:
case k in {a, b, c, d, e, f} with ints k_M, k_D and tensors
  k_x[M,D], k_w[D], k_b[D], k_out, k_mean[M], k_rstd[M]  (aten.native_layer_norm,
  the kernel F.layer_norm runs), k_probe, k_dx, k_dw, k_db  (loss = sum(out * probe)).
  a: M=1, D=13; b: M=37, D=13; c: M=1, D=96; d: M=37, D=96; e: M=2, D=9001 (a
  row longer than 2*RCHUNK: several chunks); f: M=8200, D=5 (dw/db over
  > 2*RCHUNK rows).

LayerNorm2d (SAM's image-encoder neck), eps 1e-6; torch has no such module, so
this transcribes SAM's definition:
  u = x.mean(1, keepdim=True); s = (x - u).pow(2).mean(1, keepdim=True)
  x = (x - u) / torch.sqrt(s + eps); x = w[:, None, None] * x + b[:, None, None]
case k in {p, q, r} with ints k_N, k_C, k_H, k_W and k_x, k_w, k_b, k_out,
k_mean[N,HW], k_rstd[N,HW] (= 1/sqrt(s + eps)), k_probe, k_dx, k_dw, k_db.
  p: N=1, C=6, 5x7; q: N=3, C=6, 5x7; r: N=2, C=3, 70x61 (dw/db over
  N*HW = 8540 > 2*RCHUNK pixels).
"""
import torch

from common import gen, out_dir, rand, save

EPS = 1e-6
LN_CASES = {"a": (1, 13), "b": (37, 13), "c": (1, 96), "d": (37, 96), "e": (2, 9001), "f": (8200, 5)}
LN2D_CASES = {"p": (1, 6, 5, 7), "q": (3, 6, 5, 7), "r": (2, 3, 70, 61)}


def ramp(L):
    # -1..1 along the normalized dim: with noise of amplitude 0.5 on top, no
    # row/pixel has a near-zero variance (rstd stays below ~3/scale), so the
    # comparison measures our rounding, not the conditioning of the input
    return torch.linspace(-1.0, 1.0, L) if L > 1 else torch.zeros(1)


def row_inputs(g, *shape):
    # per-row offset and scale, so the mean removal matters
    lead = shape[:-1]
    x = ramp(shape[-1]) + 0.5 * rand(g, *shape)
    return x * rand(g, *lead, 1, lo=0.5, hi=2.0) + rand(g, *lead, 1, lo=-3.0, hi=3.0)


def ln_case(k, M, D, seed):
    g = gen(seed)
    x = row_inputs(g, M, D).requires_grad_(True)
    w = rand(g, D, lo=0.5, hi=1.5).requires_grad_(True)
    b = rand(g, D).requires_grad_(True)
    out = torch.nn.functional.layer_norm(x, (D,), w, b, EPS)
    _, mean, rstd = torch.native_layer_norm(x.detach(), (D,), w.detach(), b.detach(), EPS)
    probe = rand(g, M, D)
    (out * probe).sum().backward()
    return {f"{k}_M": M, f"{k}_D": D, f"{k}_x": x, f"{k}_w": w, f"{k}_b": b, f"{k}_out": out,
            f"{k}_mean": mean.reshape(M), f"{k}_rstd": rstd.reshape(M), f"{k}_probe": probe,
            f"{k}_dx": x.grad, f"{k}_dw": w.grad, f"{k}_db": b.grad}


class LayerNorm2d(torch.nn.Module):
    """segment_anything/modeling/common.py LayerNorm2d, verbatim arithmetic."""

    def __init__(self, C, eps):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(C))
        self.bias = torch.nn.Parameter(torch.zeros(C))
        self.eps = eps

    def forward(self, x):
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


def ln2d_case(k, N, C, H, W, seed):
    g = gen(seed)
    x = ((ramp(C)[None, :, None, None] + 0.5 * rand(g, N, C, H, W)) * rand(g, N, 1, H, W, lo=0.5, hi=2.0)
         + rand(g, N, 1, H, W, lo=-3.0, hi=3.0)).requires_grad_(True)
    m = LayerNorm2d(C, EPS)
    with torch.no_grad():
        m.weight.copy_(rand(g, C, lo=0.5, hi=1.5))
        m.bias.copy_(rand(g, C))
    out = m(x)
    with torch.no_grad():
        u = x.mean(1)
        s = (x - u[:, None]).pow(2).mean(1)
        rstd = 1.0 / torch.sqrt(s + EPS)
    probe = rand(g, N, C, H, W)
    (out * probe).sum().backward()
    return {f"{k}_N": N, f"{k}_C": C, f"{k}_H": H, f"{k}_W": W, f"{k}_x": x, f"{k}_w": m.weight,
            f"{k}_b": m.bias, f"{k}_out": out, f"{k}_mean": u, f"{k}_rstd": rstd,
            f"{k}_probe": probe, f"{k}_dx": x.grad, f"{k}_dw": m.weight.grad, f"{k}_db": m.bias.grad}


def main():
    out = out_dir()
    tensors = {}
    for i, (k, shape) in enumerate(LN_CASES.items()):
        tensors.update(ln_case(k, *shape, seed=200 + i))
    for i, (k, shape) in enumerate(LN2D_CASES.items()):
        tensors.update(ln2d_case(k, *shape, seed=300 + i))
    save("layernorm", tensors, out)


if __name__ == "__main__":
    main()
