"""PyTorch reference for kernels/optim_cpu.c (tests/test_optim.c).

torch.optim.AdamW and torch.optim.SGD (1.13, CPU, default single-tensor
path) on one parameter vector of odd length n (not a multiple of the 16-float
AVX2 loop step, so PyTorch's scalar tail is exercised too), driven by a fixed
sequence of gradients that is saved with the states after every step:
  adamw   AdamW(lr=0.005, weight_decay=1e-5), 10 steps from step 1
  adamwL  AdamW(lr=0.005, weight_decay=1e-5), 3 steps from step 99998
          (state step preset to 99997, moments preset): late bias corrections
  sgd     SGD(lr=0.2, momentum=0.9, weight_decay=1e-5), 10 steps
  sgd0    SGD(lr=0.1) without momentum or decay, 3 steps
Gradients mix scales (1e-3 .. 1e2), exact zeros and tiny values (below eps).
Also saved: Python's `1 - beta ** step` (float64) for beta 0.9 and 0.999 over
many steps, to check the double-double power against glibc pow.

Run: /usr/bin/python3 tests/ref/optim.py --out build/ref
"""
import torch

from common import gen, out_dir, rand, save

N = 1237
STEPS = 10


def grads(g, steps):
    out = []
    for _ in range(steps):
        scale = 10.0 ** rand(g, N, lo=-3.0, hi=2.0)
        gr = rand(g, N) * scale
        gr[::17] = 0.0
        gr[5::23] = 1e-9
        out.append(gr)
    return torch.stack(out)


def run(opt_fn, p0, gs, pre=None):
    p = torch.nn.Parameter(p0.clone())
    opt = opt_fn([p])
    if pre is not None:
        pre(opt, p)
    ps, states = [], {}
    for s in range(gs.shape[0]):
        p.grad = gs[s].clone()
        opt.step()
        ps.append(p.detach().clone())
        for k, v in opt.state[p].items():
            if torch.is_tensor(v) and v.numel() == N:
                states.setdefault(k, []).append(v.clone())
    return torch.stack(ps), {k: torch.stack(v) for k, v in states.items()}


def main():
    out = out_dir()
    g = gen(11)
    p0 = rand(g, N)
    t = {"n": N, "steps": STEPS, "p0": p0}

    gs = grads(g, STEPS)
    ps, st = run(lambda ps_: torch.optim.AdamW(ps_, lr=0.005, weight_decay=1e-5), p0, gs)
    t.update({"adamw_grad": gs, "adamw_param": ps, "adamw_m": st["exp_avg"], "adamw_v": st["exp_avg_sq"]})

    m0, v0 = rand(g, N) * 0.1, rand(g, N, lo=0.0, hi=0.01)
    v0[::7] = 0.0

    def preset(opt, p):
        opt.state[p]["step"] = torch.tensor(99997.0)
        opt.state[p]["exp_avg"] = m0.clone()
        opt.state[p]["exp_avg_sq"] = v0.clone()
    gs = grads(g, 3)
    ps, st = run(lambda ps_: torch.optim.AdamW(ps_, lr=0.005, weight_decay=1e-5), p0, gs, preset)
    t.update({"adamwL_m0": m0, "adamwL_v0": v0, "adamwL_grad": gs, "adamwL_param": ps,
              "adamwL_m": st["exp_avg"], "adamwL_v": st["exp_avg_sq"], "adamwL_step0": 99997})

    gs = grads(g, STEPS)
    ps, st = run(lambda ps_: torch.optim.SGD(ps_, lr=0.2, momentum=0.9, weight_decay=1e-5), p0, gs)
    t.update({"sgd_grad": gs, "sgd_param": ps, "sgd_buf": st["momentum_buffer"]})

    gs = grads(g, 3)
    ps, _ = run(lambda ps_: torch.optim.SGD(ps_, lr=0.1), p0, gs)
    t.update({"sgd0_grad": gs, "sgd0_param": ps})

    # Python's bias corrections, as AdamW computes them (float step from the tensor)
    steps = list(range(1, 3001)) + [9999, 10000, 65536, 99998, 123457, 1000000, 16777216]
    t["bc_steps"] = torch.tensor(steps, dtype=torch.int64)
    t["bc1"] = torch.tensor([1 - 0.9 ** float(s) for s in steps], dtype=torch.float64)
    t["bc2"] = torch.tensor([1 - 0.999 ** float(s) for s in steps], dtype=torch.float64)
    t["pow2"] = torch.tensor([0.999 ** float(s) for s in steps], dtype=torch.float64)
    save("optim", t, out)


if __name__ == "__main__":
    main()
