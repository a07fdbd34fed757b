"""PyTorch peer of bench/bench_attention.c: SAM global attention with
decomposed relative position on a 32 x 32 token grid, N = 1, head dim 64,
NH = 12 and 16, raw rel-pos tables of 27 rows resampled to 63 in every call
(F.interpolate, as get_rel_pos does in Cellpose-SAM). The composition is the
one of the reference script tests/ref/attention.py (sam_attention), imported
from there so that both sides time exactly what the tests check.
  fwd: sam_attention with autograd recording (training mode)
  bwd: torch.autograd.grad of out against qkv and both raw tables, on a
       graph built once (retain_graph)."""
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "ref"))
from peer_util import bench, setup  # noqa: E402
from attention import sam_attention  # noqa: E402  (tests/ref/attention.py)


def case(n, s, nh, hd, length):
    t, d = s * s, nh * hd
    qkv = (torch.rand(n, t, 3 * d) * 2 - 1).requires_grad_(True)
    raw_h = ((torch.rand(length, hd) * 2 - 1) * 0.1).requires_grad_(True)
    raw_w = ((torch.rand(length, hd) * 2 - 1) * 0.1).requires_grad_(True)
    dout = torch.rand(n, t, d) * 2 - 1
    key = f"n{n}_{s}x{s}_h{nh}_d{hd}"
    bench(f"attention_fwd_{key}", lambda: sam_attention(qkv, raw_h, raw_w, n, s, s, nh, hd))
    out = sam_attention(qkv, raw_h, raw_w, n, s, s, nh, hd)[0]
    bench(f"attention_bwd_{key}", lambda: torch.autograd.grad(out, [qkv, raw_h, raw_w], dout, retain_graph=True))


def main():
    setup()  # after the imports: tests/ref/common.py pins 1 thread at import
    torch.manual_seed(0)
    case(1, 32, 12, 64, 27)
    case(1, 32, 16, 64, 27)


if __name__ == "__main__":
    main()
