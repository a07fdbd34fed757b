"""PyTorch reference for kernels/loss_cpu.c (tests/test_loss.c).

Cases (odd shapes; sizes above RCHUNK = 4096 so several chunks are summed):
  mse0/mse1   F.mse_loss on [3,5,37,29] / [1,3,13,11]
  bce0/bce1   F.binary_cross_entropy_with_logits, same shapes, logits in
              [-30, 30] plus exact specials (0, +-1e-8, +-30), targets mixing
              exact 0, exact 1 and soft values
  cp0/cp1     Cellpose v3 train._loss_fn_seg on y, lbl [1,3,37,29] and
              [3,3,61,53]; lbl[:,0] holds 0, 1, exactly 0.5 (-> target 0) and
              values around 0.5; flows in [-1, 1], y flows in [-6, 6]
The scalar losses are backpropagated with a random probe dloss (the
"sum(out * probe)" of a scalar output); the Cellpose loss with 1 (the C op
has no dloss argument).

Run: /usr/bin/python3 tests/ref/loss.py --out build/ref
"""
import torch
import torch.nn.functional as F

from common import gen, out_dir, rand, save


def loss_fn_seg(lbl, y):
    """Transcription of cellpose/train.py _loss_fn_seg (v3)."""
    criterion = torch.nn.MSELoss(reduction="mean")
    criterion2 = torch.nn.BCEWithLogitsLoss(reduction="mean")
    veci = 5. * lbl[:, 1:]
    loss = criterion(y[:, :2], veci)
    loss /= 2.
    loss2 = criterion2(y[:, -1], (lbl[:, 0] > 0.5).float())
    loss = loss + loss2
    return loss


def logits(g, shape):
    x = rand(g, *shape, lo=-30.0, hi=30.0).reshape(-1)
    special = torch.tensor([0.0, -0.0, 1e-8, -1e-8, 30.0, -30.0, 17.5, -17.5, 0.5, -0.5])
    x[:special.numel()] = special
    x[-3:] = torch.tensor([-30.0, 30.0, 0.0])
    return x.reshape(shape)


def soft_targets(g, shape):
    t = rand(g, *shape, lo=0.0, hi=1.0)
    pick = rand(g, *shape, lo=0.0, hi=3.0)
    t = torch.where(pick < 1.0, torch.zeros_like(t), torch.where(pick < 2.0, torch.ones_like(t), t))
    return t


def main():
    out = out_dir()
    g = gen(7)
    tensors = {}
    shapes = [(3, 5, 37, 29), (1, 3, 13, 11)]
    for k, shape in enumerate(shapes):
        n = 1
        for s in shape:
            n *= s
        # MSE
        p = rand(g, *shape, lo=-3.0, hi=3.0).requires_grad_()
        t = rand(g, *shape, lo=-3.0, hi=3.0)
        probe = float(rand(g, 1, lo=0.5, hi=2.0))
        loss = F.mse_loss(p, t)
        (loss * probe).backward()
        tensors.update({f"mse{k}_pred": p, f"mse{k}_target": t, f"mse{k}_loss": loss.reshape(1),
                        f"mse{k}_dloss": torch.tensor([probe]), f"mse{k}_dpred": p.grad, f"mse{k}_n": n})
        # BCE with logits
        x = logits(g, shape).requires_grad_()
        t = soft_targets(g, shape)
        probe = float(rand(g, 1, lo=0.5, hi=2.0))
        loss = F.binary_cross_entropy_with_logits(x, t)
        (loss * probe).backward()
        tensors.update({f"bce{k}_logit": x, f"bce{k}_target": t, f"bce{k}_loss": loss.reshape(1),
                        f"bce{k}_dloss": torch.tensor([probe]), f"bce{k}_dlogit": x.grad, f"bce{k}_n": n})

    for k, (N, H, W) in enumerate([(1, 37, 29), (3, 61, 53)]):
        y = torch.cat([rand(g, N, 2, H, W, lo=-6.0, hi=6.0), logits(g, (N, 1, H, W))], dim=1).requires_grad_()
        prob = rand(g, N, 1, H, W, lo=0.0, hi=1.0)
        pick = rand(g, N, 1, H, W, lo=0.0, hi=4.0)
        prob = torch.where(pick < 1.0, torch.zeros_like(prob),
                           torch.where(pick < 2.0, torch.ones_like(prob),
                                       torch.where(pick < 2.5, torch.full_like(prob, 0.5), prob)))
        lbl = torch.cat([prob, rand(g, N, 2, H, W, lo=-1.0, hi=1.0)], dim=1)
        loss = loss_fn_seg(lbl, y)
        loss.backward()
        tensors.update({f"cp{k}_y": y, f"cp{k}_lbl": lbl, f"cp{k}_loss": loss.reshape(1), f"cp{k}_dy": y.grad,
                        f"cp{k}_N": N, f"cp{k}_H": H, f"cp{k}_W": W})
    save("loss", tensors, out)


if __name__ == "__main__":
    main()
