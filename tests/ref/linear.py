"""PyTorch reference for kernels/linear: torch.nn.functional.linear forward and
backward (float32) on small odd shapes, saved as <out>/linear.safetensors.

Per case k: k_inp[M,IN], k_w[OUT,IN], k_b[OUT] (zeros and k_bias = 0 when the
case has no bias), k_probe[M,OUT], k_out = linear(inp, w, b), and the
gradients of loss = sum(out * probe): k_dinp, k_dw, k_db; shape ints k_M,
k_IN, k_OUT, k_bias.

Run: /usr/bin/python3 tests/ref/linear.py --out build/ref
"""
import torch
import torch.nn.functional as F

from common import gen, out_dir, rand, save

# name: (batch, tokens, IN, OUT, bias). M = batch * tokens.
CASES = {
    "c0": (1, 37, 29, 45, True),     # batch 1, everything odd
    "c1": (3, 23, 70, 131, False),   # batch 3, no bias, OUT past one column block
    "c2": (3, 17, 300, 270, True),   # IN past one r-block (256), ragged column groups
    "c3": (2, 2203, 13, 21, True),   # M = 4406 > RCHUNK: two chunks in dw, db
}


def case(k, batch, tokens, IN, OUT, bias, seed):
    g = gen(seed)
    inp = rand(g, batch, tokens, IN).requires_grad_()
    w = rand(g, OUT, IN, lo=-0.5, hi=0.5).requires_grad_()
    b = rand(g, OUT).requires_grad_() if bias else None
    out = F.linear(inp, w, b)
    probe = rand(g, *out.shape)
    (out * probe).sum().backward()
    M = batch * tokens
    return {
        f"{k}_inp": inp.reshape(M, IN), f"{k}_w": w, f"{k}_b": b if bias else torch.zeros(OUT),
        f"{k}_probe": probe.reshape(M, OUT), f"{k}_out": out.reshape(M, OUT),
        f"{k}_dinp": inp.grad.reshape(M, IN), f"{k}_dw": w.grad,
        f"{k}_db": b.grad if bias else torch.zeros(OUT),
        f"{k}_M": M, f"{k}_IN": IN, f"{k}_OUT": OUT, f"{k}_bias": int(bias),
    }


def main():
    out = out_dir()
    tensors = {}
    for i, (k, c) in enumerate(CASES.items()):
        tensors.update(case(k, *c, seed=300 + i))
    save("linear", tensors, out)


if __name__ == "__main__":
    main()
