"""PyTorch reference for kernels/eltwise (relu, gelu, add, add_bias_hw).

Writes <out>/eltwise.safetensors, read by tests/test_eltwise.c. Every case
saves its inputs, a random probe `dout` (loss = sum(out * dout), so every
output gets a distinct gradient), the forward output and the gradients, plus
the shape ints. Shapes are odd (H, W not multiples of 8, C not a multiple of
8), batch 1 and 3, and one add_bias_hw case has HW > RCHUNK (4096) so the
chunked dbias reduction spans several chunks.

Run: /usr/bin/python3 tests/ref/eltwise.py --out build/ref
"""
import torch
import torch.nn.functional as F

from common import gen, out_dir, rand, save

T = {}


def grads(out, inputs, g):
    """Gradients of sum(out * dout) w.r.t. inputs; dout random in [-1, 1)."""
    dout = rand(g, *out.shape)
    gs = torch.autograd.grad(out, inputs, dout)
    return dout, gs


def unary(name, fn, x, g):
    x = x.clone().requires_grad_(True)
    out = fn(x)
    dout, (dx,) = grads(out, [x], g)
    T.update({f"{name}_x": x, f"{name}_out": out, f"{name}_dout": dout, f"{name}_dx": dx,
              f"{name}_n": x.numel()})


def main():
    out = out_dir()
    g = gen(20261121)
    for N in (1, 3):
        x = rand(g, N, 5, 7, 9, lo=-3.0, hi=3.0)
        unary(f"relu_n{N}", torch.relu, x, g)  # PyTorch: torch.relu
        unary(f"gelu_n{N}", lambda v: F.gelu(v, approximate="none"), x, g)
    # GELU over its whole range: the tails (erf saturates, exp underflows),
    # zero, tiny and large values.
    special = torch.cat([torch.linspace(-12.0, 12.0, 241),
                         torch.tensor([-40.0, -9.5, -5.0, -1e-3, -1e-30, 0.0, 1e-30, 1e-6, 0.5, 4.0, 7.5, 40.0])])
    unary("gelu_sp", lambda v: F.gelu(v, approximate="none"), special, g)

    a, b = rand(g, 3, 5, 7, 9), rand(g, 3, 5, 7, 9)
    T.update({"add_a": a, "add_b": b, "add_out": a + b, "add_n": a.numel()})

    # add_bias_hw: out[n,c,hw] = inp + bias[n,c] (the CPnet style broadcast)
    for name, (N, C, H, W) in {"abh_a": (1, 5, 7, 9), "abh_b": (3, 5, 7, 9), "abh_big": (2, 3, 67, 71)}.items():
        inp = rand(g, N, C, H, W).requires_grad_(True)
        bias = rand(g, N, C).requires_grad_(True)
        o = inp + bias[:, :, None, None]
        dout, (dinp, dbias) = grads(o, [inp, bias], g)
        T.update({f"{name}_inp": inp, f"{name}_bias": bias, f"{name}_out": o, f"{name}_dout": dout,
                  f"{name}_dinp": dinp, f"{name}_dbias": dbias,
                  f"{name}_N": N, f"{name}_C": C, f"{name}_H": H, f"{name}_W": W})
    save("eltwise", T, out)


if __name__ == "__main__":
    main()
