"""PyTorch reference for kernels/patch: the ViT patch embedding
(conv2d, kernel = stride = P, output token-major channels-last) and the patch
readout (conv_transpose2d, kernel = stride = P), forward and backward in
float32, saved as <out>/patch.safetensors.

Patch embedding case k: k_inp[N,C,H,W], k_w[OC,C,P,P], k_b[OC],
k_out[N,T,OC] = conv2d(inp, w, b, stride=P).flatten(2).transpose(1, 2),
k_probe[N,T,OC], gradients of sum(out * probe): k_dinp, k_dw, k_db.
Readout case k: k_inp[N,C,H,W], k_w[C,OC,P,P], k_b[OC] (zeros, k_bias = 0 when
absent), k_out[N,OC,H*P,W*P] = conv_transpose2d(inp, w, b, stride=P),
k_probe, k_dinp, k_dw, k_db. Shape ints: k_N k_C k_H k_W k_OC k_P (k_bias).
Case "rid" is the identity readout w = eye(192).reshape(192, 3, 8, 8), a
pixel shuffle: rid_shuffle = pixel_shuffle(inp, 8).

Run: /usr/bin/python3 tests/ref/patch.py --out build/ref
"""
import torch
import torch.nn.functional as F

from common import gen, out_dir, rand, save

# patch embedding: name: (N, C, H, W, OC, P)
EMBED = {
    "e0": (1, 3, 21, 15, 13, 3),     # batch 1, odd everything
    "e1": (3, 5, 24, 40, 37, 8),     # P = 8
    "e2": (1, 3, 32, 48, 20, 16),    # P = 16: KP = 768 spans three r-blocks
    "e3": (3, 2, 10, 35, 150, 5),    # OC past one column block
}
# readout: name: (N, C, H, W, OC, P, bias)
READOUT = {
    "r0": (1, 7, 5, 9, 3, 3, True),
    "r1": (3, 13, 4, 6, 5, 8, False),   # P = 8
    "r2": (1, 20, 3, 5, 2, 16, True),   # P = 16
    "r3": (3, 4, 40, 37, 2, 2, True),   # N*H*W = 4440 > RCHUNK: two chunks in dw
}


def shape_ints(k, N, C, H, W, OC, P):
    return {f"{k}_N": N, f"{k}_C": C, f"{k}_H": H, f"{k}_W": W, f"{k}_OC": OC, f"{k}_P": P}


def embed_case(k, N, C, H, W, OC, P, seed):
    g = gen(seed)
    inp = rand(g, N, C, H, W).requires_grad_()
    w = rand(g, OC, C, P, P, lo=-0.3, hi=0.3).requires_grad_()
    b = rand(g, OC).requires_grad_()
    out = F.conv2d(inp, w, b, stride=P).flatten(2).transpose(1, 2)  # [N, T, OC]
    probe = rand(g, *out.shape)
    (out * probe).sum().backward()
    t = {f"{k}_inp": inp, f"{k}_w": w, f"{k}_b": b, f"{k}_out": out, f"{k}_probe": probe,
         f"{k}_dinp": inp.grad, f"{k}_dw": w.grad, f"{k}_db": b.grad}
    t.update(shape_ints(k, N, C, H, W, OC, P))
    return t


def readout_case(k, N, C, H, W, OC, P, bias, seed, w=None):
    g = gen(seed)
    inp = rand(g, N, C, H, W).requires_grad_()
    if w is None:
        w = rand(g, C, OC, P, P, lo=-0.3, hi=0.3)
    w = w.clone().requires_grad_()
    b = rand(g, OC).requires_grad_() if bias else None
    out = F.conv_transpose2d(inp, w, b, stride=P)
    probe = rand(g, *out.shape)
    (out * probe).sum().backward()
    t = {f"{k}_inp": inp, f"{k}_w": w, f"{k}_b": b if bias else torch.zeros(OC), f"{k}_out": out,
         f"{k}_probe": probe, f"{k}_dinp": inp.grad, f"{k}_dw": w.grad,
         f"{k}_db": b.grad if bias else torch.zeros(OC), f"{k}_bias": int(bias)}
    t.update(shape_ints(k, N, C, H, W, OC, P))
    return t


def main():
    out = out_dir()
    tensors = {}
    for i, (k, c) in enumerate(EMBED.items()):
        tensors.update(embed_case(k, *c, seed=400 + i))
    for i, (k, c) in enumerate(READOUT.items()):
        tensors.update(readout_case(k, *c, seed=500 + i))
    # identity readout = pixel shuffle (the Cellpose-SAM W2 readout shape)
    eye = torch.eye(192).reshape(192, 3, 8, 8)
    t = readout_case("rid", 3, 192, 5, 7, 3, 8, False, seed=600, w=eye)
    t["rid_shuffle"] = F.pixel_shuffle(t["rid_inp"].detach(), 8)
    tensors.update(t)
    save("patch", tensors, out)


if __name__ == "__main__":
    main()
