"""PyTorch reference for conv2d ("same" conv, stride 1, zero padding K//2).

Writes <out>/conv2d.safetensors, read by tests/test_conv2d.c. For each case
<c>: inputs <c>_inp [N,C,H,W], <c>_w [OC,C,K,K], <c>_b [OC] (when the case
has a bias), the probe <c>_probe [N,OC,H,W] (loss = sum(out * probe), so
every output gets a distinct gradient), the forward output <c>_out, the
gradients <c>_dinp, <c>_dw, <c>_db, and the shape ints <c>_N, _C, _H, _W,
_OC, _K, _bias. Shapes are small and odd (H, W not multiples of 8/16, C not a
multiple of 8), batch 1 and 3, plus special cases: 1x1 kernels, a kernel of
5 (the generic path), H = 1, W = 1, no bias, and a batch whose N*H*W spans
more than one RCHUNK (4096) reduction chunk.

Run: /usr/bin/python3 tests/ref/conv2d.py --out build/ref
"""
import torch
import torch.nn.functional as F

from common import gen, out_dir, rand, save

# name: (N, C, H, W, OC, K, bias)
CASES = {
    "k3_n3": (3, 5, 13, 11, 7, 3, True),
    "k3_n1": (1, 3, 9, 23, 17, 3, True),
    "k1_n3": (3, 6, 7, 15, 5, 1, True),
    "k1_n1": (1, 19, 5, 9, 37, 1, False),
    "k3_h1_nobias": (3, 4, 1, 7, 3, 3, False),
    "k3_w1": (1, 3, 6, 1, 5, 3, True),
    "k5_n3": (3, 3, 6, 9, 4, 5, True),
    "k3_chunks": (3, 3, 29, 53, 35, 3, True),  # N*H*W = 4611 > 4096: two chunks
}


def main():
    out = out_dir()
    g = gen(20261121)
    tensors = {}
    for name, (N, C, H, W, OC, K, bias) in CASES.items():
        inp = rand(g, N, C, H, W).requires_grad_(True)
        w = (rand(g, OC, C, K, K) / (C * K * K) ** 0.5).requires_grad_(True)
        b = rand(g, OC).requires_grad_(True) if bias else None
        probe = rand(g, N, OC, H, W)
        o = F.conv2d(inp, w, b, stride=1, padding=K // 2)
        (o * probe).sum().backward()
        tensors.update({
            f"{name}_inp": inp, f"{name}_w": w, f"{name}_probe": probe, f"{name}_out": o,
            f"{name}_dinp": inp.grad, f"{name}_dw": w.grad,
            f"{name}_N": N, f"{name}_C": C, f"{name}_H": H, f"{name}_W": W,
            f"{name}_OC": OC, f"{name}_K": K, f"{name}_bias": int(bias),
        })
        if bias:
            tensors[f"{name}_b"] = b
            tensors[f"{name}_db"] = b.grad
    save("conv2d", tensors, out)


if __name__ == "__main__":
    main()
