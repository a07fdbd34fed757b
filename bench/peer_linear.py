"""PyTorch peer of bench/bench_linear.c: the same ops, shapes and keys.

Backward passes compute what autograd computes for them: Linear
dinp = dout @ w, dw = dout^T @ inp, db = dout.sum(0); the patch embedding's
parameter gradients and the readout's three gradients through
aten.convolution_backward (the kernel autograd calls). The *_vs_onednn rows
repeat the Linear products through oneDNN (torch._C._nn.mkldnn_linear),
because this torch build's F.linear runs a generic reference BLAS.

Run: OMP_NUM_THREADS=2 /usr/bin/python3 bench/peer_linear.py --threads 2
"""
import torch
import torch.nn.functional as F

from peer_util import bench, setup


def linear(M, IN, OUT):
    inp, w, b = torch.randn(M, IN), torch.randn(OUT, IN) * 0.03, torch.randn(OUT)
    dout = torch.randn(M, OUT)

    def bwd():
        torch.mm(dout, w)       # dinp
        torch.mm(dout.t(), inp)  # dw
        dout.sum(0)              # db

    key = f"M{M}_{IN}x{OUT}"
    with torch.no_grad():
        bench(f"linear_fwd_{key}", lambda: F.linear(inp, w, b))
        bench(f"linear_bwd_{key}", bwd)
    # The same products through oneDNN (this torch build's F.linear calls a
    # generic reference BLAS): operands converted (and transposed) once,
    # outside the timing, which favours torch slightly.
    im, wm, bm, dm = inp.to_mkldnn(), w.to_mkldnn(), b.to_mkldnn(), dout.to_mkldnn()
    wt, dt, it = w.t().contiguous().to_mkldnn(), dout.t().contiguous().to_mkldnn(), inp.t().contiguous().to_mkldnn()
    lin = torch._C._nn.mkldnn_linear

    def bwd_onednn():
        lin(dm, wt, None)   # dinp = dout @ w
        lin(dt, it, None)   # dw = dout^T @ inp
        dout.sum(0)         # db

    with torch.no_grad():
        bench(f"linear_fwd_{key}_vs_onednn", lambda: lin(im, wm, bm))
        bench(f"linear_bwd_{key}_vs_onednn", bwd_onednn)


def conv_bwd(dout, x, w, mask, transposed, stride):
    return torch.ops.aten.convolution_backward(dout, x, w, [w.shape[1] if transposed else w.shape[0]],
                                               [stride, stride], [0, 0], [1, 1], transposed, [0, 0], 1, mask)


def patch_embed(N, C, H, W, OC, P):
    x, w, b = torch.randn(N, C, H, W), torch.randn(OC, C, P, P) * 0.05, torch.randn(OC)
    dout = torch.randn(N, OC, H // P, W // P)
    key = f"N{N}_C{C}_{H}x{W}_P{P}_OC{OC}"
    with torch.no_grad():
        bench(f"patch_embed_fwd_{key}", lambda: F.conv2d(x, w, b, stride=P).flatten(2).transpose(1, 2).contiguous())
        bench(f"patch_embed_bwd_wb_{key}", lambda: conv_bwd(dout, x, w, [False, True, True], False, P))


def readout(N, C, H, W, OC, P):
    x, w, b = torch.randn(N, C, H, W), torch.randn(C, OC, P, P) * 0.05, torch.randn(OC)
    dout = torch.randn(N, OC, H * P, W * P)
    key = f"N{N}_C{C}_{H}x{W}_P{P}_OC{OC}"
    with torch.no_grad():
        bench(f"readout_fwd_{key}", lambda: F.conv_transpose2d(x, w, b, stride=P))
        bench(f"readout_bwd_{key}", lambda: conv_bwd(dout, x, w, [True, True, True], True, P))


def main():
    setup()
    linear(1024, 768, 2304)
    linear(1024, 1024, 3072)
    linear(1024, 1024, 4096)
    linear(1024, 4096, 1024)
    patch_embed(1, 3, 256, 256, 1024, 8)
    readout(1, 192, 32, 32, 3, 8)


if __name__ == "__main__":
    main()
