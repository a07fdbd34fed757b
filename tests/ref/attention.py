"""PyTorch reference for kernels/attention (tests/test_attention.c).

Three ops, float32, loss = sum(out * probe) with a random probe:
  softmax   torch.softmax over the last dim; shapes (7, 13) and (3, 5000)
            (5000 > RCHUNK: the row sum spans two chunks of the plan).
  interp1d  F.interpolate(mode="linear", align_corners=False) of a table
            [Lin, C] along its rows: up (5->9, 5->13, 27->63), down (27->9,
            27->13, 127->63), identity (9->9), C = 8 and 64.
  attention SAM global attention with decomposed relative position, written
            here from the description in CELLPOSE.md 2.4 (not SAM's code):
            qkv [N, T, 3D] -> q, k, v per head; logits = (q * HD^-0.5) @ k.T
            + rel_h + rel_w with the unscaled q; softmax; @ v. The raw tables
            are resampled to 2*size-1 rows when their length differs
            (get_rel_pos). Grid 5 x 7, NH = 3, HD = 8; cases
            c0: N=1, raw lengths 9 / 13 (no interpolation),
            c1: N=2, raw lengths 5 / 5 (upsampling),
            c2: N=2, raw lengths 27 / 27 (downsampling).
Saved: inputs, outputs, the saved att, the interpolated tables and the
gradients of qkv and of the RAW tables.

Run: /usr/bin/python3 tests/ref/attention.py --out build/ref
"""
import torch
import torch.nn.functional as F

from common import gen, out_dir, rand, save

GRID_H, GRID_W, NH, HD = 5, 7, 3, 8


def resample(table, length):
    """get_rel_pos's table step: [L, C] -> [length, C], linear, align_corners=False."""
    if table.shape[0] == length:
        return table
    r = F.interpolate(table.reshape(1, table.shape[0], -1).permute(0, 2, 1), size=length, mode="linear")
    return r.reshape(-1, length).permute(1, 0)


def rel_gather(table, size):
    """R[qc, kc] = table[(qc - kc) + (size - 1)]: [size, size, C]."""
    idx = torch.arange(size)[:, None] - torch.arange(size)[None, :] + (size - 1)
    return table[idx]


def sam_attention(qkv, raw_h, raw_w, n, hq, wq, nh, hd):
    """Returns out [N, T, D] (before proj), att [N, NH, T, T], tables [2H-1, HD], [2W-1, HD]."""
    t = hq * wq
    x = qkv.reshape(n, t, 3, nh, hd).permute(2, 0, 3, 1, 4).reshape(3, n * nh, t, hd)
    q, k, v = x[0], x[1], x[2]
    logits = (q * hd ** -0.5) @ k.transpose(-2, -1)
    tab_h, tab_w = resample(raw_h, 2 * hq - 1), resample(raw_w, 2 * wq - 1)
    rq = q.reshape(n * nh, hq, wq, hd)  # the unscaled q
    rel_h = torch.einsum("bhwc,hkc->bhwk", rq, rel_gather(tab_h, hq))
    rel_w = torch.einsum("bhwc,wkc->bhwk", rq, rel_gather(tab_w, wq))
    logits = (logits.view(n * nh, hq, wq, hq, wq) + rel_h[:, :, :, :, None] + rel_w[:, :, :, None, :]).view(
        n * nh, t, t)
    att = logits.softmax(dim=-1)
    out = (att @ v).view(n, nh, hq, wq, hd).permute(0, 2, 3, 1, 4).reshape(n, t, nh * hd)
    return out, att.view(n, nh, t, t), tab_h, tab_w


def softmax_case(g, name, m, l, res):
    x = rand(g, m, l, lo=-4.0, hi=4.0).requires_grad_(True)
    probe = rand(g, m, l)
    y = torch.softmax(x, dim=-1)
    (y * probe).sum().backward()
    res.update({f"{name}_x": x, f"{name}_probe": probe, f"{name}_y": y, f"{name}_dx": x.grad,
                f"{name}_M": m, f"{name}_L": l})


def interp_case(g, idx, lin, lout, c, res):
    x = rand(g, lin, c).requires_grad_(True)
    probe = rand(g, lout, c)
    y = F.interpolate(x.t()[None], size=lout, mode="linear", align_corners=False)[0].t()
    (y * probe).sum().backward()
    p = f"interp{idx}"
    res.update({f"{p}_x": x, f"{p}_probe": probe, f"{p}_y": y, f"{p}_dx": x.grad,
                f"{p}_Lin": lin, f"{p}_Lout": lout, f"{p}_C": c})


def attention_case(g, name, n, len_h, len_w, res):
    t, d = GRID_H * GRID_W, NH * HD
    qkv = rand(g, n, t, 3 * d, lo=-1.5, hi=1.5).requires_grad_(True)
    raw_h = rand(g, len_h, HD, lo=-0.5, hi=0.5).requires_grad_(True)
    raw_w = rand(g, len_w, HD, lo=-0.5, hi=0.5).requires_grad_(True)
    probe = rand(g, n, t, d)
    out, att, tab_h, tab_w = sam_attention(qkv, raw_h, raw_w, n, GRID_H, GRID_W, NH, HD)
    (out * probe).sum().backward()
    res.update({f"{name}_qkv": qkv, f"{name}_raw_h": raw_h, f"{name}_raw_w": raw_w, f"{name}_probe": probe,
                f"{name}_out": out, f"{name}_att": att, f"{name}_tab_h": tab_h, f"{name}_tab_w": tab_w,
                f"{name}_dqkv": qkv.grad, f"{name}_draw_h": raw_h.grad, f"{name}_draw_w": raw_w.grad,
                f"{name}_N": n, f"{name}_Lh": len_h, f"{name}_Lw": len_w})


def main():
    out = out_dir()
    g = gen(20260101)
    res = {"Hq": GRID_H, "Wq": GRID_W, "NH": NH, "HD": HD}
    softmax_case(g, "sm0", 7, 13, res)
    softmax_case(g, "sm1", 3, 5000, res)
    interps = [(5, 9, 8), (5, 13, 8), (27, 63, 64), (27, 9, 8), (27, 13, 8), (127, 63, 64), (9, 9, 8)]
    for i, (lin, lout, c) in enumerate(interps):
        interp_case(g, i, lin, lout, c, res)
    res["n_interp"] = len(interps)
    attention_case(g, "c0", 1, 2 * GRID_H - 1, 2 * GRID_W - 1, res)
    attention_case(g, "c1", 2, 5, 5, res)
    attention_case(g, "c2", 2, 27, 27, res)
    save("attention", res, out)


if __name__ == "__main__":
    main()
