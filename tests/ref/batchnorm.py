"""PyTorch reference for kernels/batchnorm (tests/test_batchnorm.c).

nn.BatchNorm2d(C, eps=1e-5, momentum=0.05) as in Cellpose's CPnet, float32.
Per case <k> (shapes as ints <k>_N, <k>_C, <k>_H, <k>_W):
  <k>_x1, <k>_x2, <k>_x3   inputs of three training forwards
  <k>_w, <k>_b             affine parameters
  <k>_rm0, <k>_rv0         running stats before the first call (random, so the
                           update is visible), <k>_rm1/<k>_rv1 after call 1,
                           <k>_rm3/<k>_rv3 after call 3
  <k>_out, <k>_mean, <k>_rstd   call-1 output and saved batch mean / invstd
                           (aten.native_batch_norm, the kernel BatchNorm2d runs)
  <k>_probe, <k>_dx, <k>_dw, <k>_db   loss = sum(out * probe) of call 1
  <k>_xe, <k>_oute         eval-mode forward with the running stats after call 3
Cases: a (N=1, C=5, 9x13), b (N=3, C=7, 9x13), c (N=3, C=5, 70x61: N*HW =
12810 > 2*RCHUNK, so the chunk plan has several chunks per channel).
"""
import torch

from common import gen, out_dir, rand, save

EPS, MOMENTUM = 1e-5, 0.05
CASES = {"a": (1, 5, 9, 13), "b": (3, 7, 9, 13), "c": (3, 5, 70, 61)}


def inputs(g, N, C, H, W):
    # per-channel offset and scale, so the mean removal matters
    shift = rand(g, 1, C, 1, 1, lo=-3.0, hi=3.0)
    scale = rand(g, 1, C, 1, 1, lo=0.5, hi=2.0)
    return rand(g, N, C, H, W) * scale + shift


def case(k, N, C, H, W, seed):
    g = gen(seed)
    t = {f"{k}_N": N, f"{k}_C": C, f"{k}_H": H, f"{k}_W": W}
    xs = [inputs(g, N, C, H, W) for _ in range(3)]
    bn = torch.nn.BatchNorm2d(C, eps=EPS, momentum=MOMENTUM)
    with torch.no_grad():
        bn.weight.copy_(rand(g, C, lo=0.5, hi=1.5))
        bn.bias.copy_(rand(g, C))
        bn.running_mean.copy_(rand(g, C))
        bn.running_var.copy_(rand(g, C, lo=0.5, hi=2.0))
    t.update({f"{k}_w": bn.weight.clone(), f"{k}_b": bn.bias.clone(),
              f"{k}_rm0": bn.running_mean.clone(), f"{k}_rv0": bn.running_var.clone()})
    # saved statistics from the kernel itself (on copies of the running stats)
    _, smean, srstd = torch.native_batch_norm(xs[0], bn.weight.detach(), bn.bias.detach(),
                                              bn.running_mean.clone(), bn.running_var.clone(),
                                              True, MOMENTUM, EPS)
    bn.train()
    x1 = xs[0].clone().requires_grad_(True)
    out = bn(x1)
    probe = rand(g, *out.shape)
    (out * probe).sum().backward()
    t.update({f"{k}_x1": xs[0], f"{k}_out": out, f"{k}_mean": smean, f"{k}_rstd": srstd,
              f"{k}_probe": probe, f"{k}_dx": x1.grad, f"{k}_dw": bn.weight.grad,
              f"{k}_db": bn.bias.grad,
              f"{k}_rm1": bn.running_mean.clone(), f"{k}_rv1": bn.running_var.clone()})
    with torch.no_grad():
        bn(xs[1])
        bn(xs[2])
    t.update({f"{k}_x2": xs[1], f"{k}_x3": xs[2],
              f"{k}_rm3": bn.running_mean.clone(), f"{k}_rv3": bn.running_var.clone()})
    bn.eval()
    xe = inputs(g, N, C, H, W)
    with torch.no_grad():
        t.update({f"{k}_xe": xe, f"{k}_oute": bn(xe)})
    return t


def main():
    out = out_dir()
    tensors = {}
    for i, (k, shape) in enumerate(CASES.items()):
        tensors.update(case(k, *shape, seed=100 + i))
    save("batchnorm", tensors, out)


if __name__ == "__main__":
    main()
