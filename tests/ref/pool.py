"""PyTorch reference for kernels/pool (maxpool2x2, upsample2x, style).

Writes <out>/pool.safetensors, read by tests/test_pool.c. Each case saves its
input, a random probe `dout` (loss = sum(out * dout)), the output, the input
gradient and the shape ints.
  maxpool: odd and even H/W (floor mode drops the last row/column), a case
           with many ties (values in {0, 1, 2}: the FIRST maximum must win
           and take the gradient), a case with NaNs (NaN wins; among several
           NaNs PyTorch keeps the LAST). `arg` = window position 0..3 of
           PyTorch's returned index, stored as float32.
  upsample: nearest x2, odd shapes; dout of mixed magnitudes so that the
           2x2 gather order is visible in the bits.
  style:   Cellpose's make_style transcribed; a case with HW > RCHUNK (4096)
           and a case with an all-zero sample (norm 0 -> NaN style and NaN
           gradient for that sample only).

Run: /usr/bin/python3 tests/ref/pool.py --out build/ref
"""
import torch
import torch.nn.functional as F

from common import gen, out_dir, rand, save

T = {}


def shape_ints(name, N, C, H, W):
    T.update({f"{name}_N": N, f"{name}_C": C, f"{name}_H": H, f"{name}_W": W})


def maxpool_case(name, x, g):
    N, C, H, W = x.shape
    x = x.clone().requires_grad_(True)
    out, idx = F.max_pool2d_with_indices(x, 2, 2)  # PyTorch: nn.MaxPool2d(2, 2), floor mode
    dout = rand(g, *out.shape)
    (dx,) = torch.autograd.grad(out, [x], dout)
    Ho, Wo = out.shape[2], out.shape[3]
    oy = torch.arange(Ho)[:, None] * 2
    ox = torch.arange(Wo)[None, :] * 2
    pos = (idx // W - oy) * 2 + (idx % W - ox)  # window position dy*2+dx
    assert int(pos.min()) >= 0 and int(pos.max()) <= 3
    T.update({f"{name}_x": x, f"{name}_out": out, f"{name}_arg": pos.float(), f"{name}_dout": dout,
              f"{name}_dx": dx})
    shape_ints(name, N, C, H, W)


def upsample_case(name, N, C, H, W, g):
    x = rand(g, N, C, H, W).requires_grad_(True)
    out = F.interpolate(x, scale_factor=2, mode="nearest")
    # full-mantissa values of mixed magnitude, so that summing the 2x2 block
    # in another order would round differently (values k/2^23 add exactly)
    dout = rand(g, *out.shape) * torch.exp(rand(g, *out.shape, lo=-4.0, hi=4.0))
    (dx,) = torch.autograd.grad(out, [x], dout)
    T.update({f"{name}_x": x, f"{name}_out": out, f"{name}_dout": dout, f"{name}_dx": dx})
    shape_ints(name, N, C, H, W)


def make_style(x0):
    """Cellpose v3 CPnet.make_style, transcribed."""
    style = F.avg_pool2d(x0, kernel_size=(x0.shape[-2], x0.shape[-1]))
    style = style.flatten(1)
    style = style / torch.sum(style ** 2, axis=1, keepdim=True) ** .5
    return style


def style_case(name, x, g):
    N, C, H, W = x.shape
    x = x.clone().requires_grad_(True)
    out = make_style(x)
    dout = rand(g, *out.shape)
    (dx,) = torch.autograd.grad(out, [x], dout)
    T.update({f"{name}_x": x, f"{name}_out": out, f"{name}_dout": dout, f"{name}_dx": dx})
    shape_ints(name, N, C, H, W)


def main():
    out = out_dir()
    g = gen(20261122)
    maxpool_case("mp_a", rand(g, 3, 5, 9, 11), g)
    maxpool_case("mp_b", rand(g, 1, 3, 8, 7), g)
    maxpool_case("mp_tie", torch.randint(0, 3, (3, 5, 7, 9), generator=g).float(), g)
    x = rand(g, 1, 3, 6, 7)
    nan = float("nan")
    x[0, 0, 0, 0] = nan                      # window (0,0): NaN first
    x[0, 0, 1, 3] = nan                      # window (0,1): NaN last
    x[0, 1, 2, 2] = nan; x[0, 1, 3, 2] = nan  # window (1,1): two NaNs, the last wins
    x[0, 2, 4, 5] = nan; x[0, 2, 5, 4] = nan  # window (2,2): two NaNs on a diagonal
    x[0, 2, 0, 6] = nan                      # dropped last column: no effect
    maxpool_case("mp_nan", x, g)

    upsample_case("up_a", 3, 5, 7, 9, g)
    upsample_case("up_b", 1, 3, 4, 5, g)

    style_case("st_a", rand(g, 3, 5, 7, 9, lo=-0.5, hi=1.0), g)
    style_case("st_b", rand(g, 1, 6, 5, 3, lo=-0.5, hi=1.0), g)
    style_case("st_big", rand(g, 2, 3, 67, 71, lo=-0.5, hi=1.0), g)
    x = rand(g, 3, 4, 5, 7, lo=-0.5, hi=1.0)
    x[1] = 0.0  # zero-norm sample: Cellpose divides 0 by 0
    style_case("st_zero", x, g)
    save("pool", T, out)


if __name__ == "__main__":
    main()
