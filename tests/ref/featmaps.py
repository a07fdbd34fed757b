"""Reference for infer/featmaps.c's PCA (tests/test_featmaps.c): numpy's
np.cov (ddof 1) and np.linalg.eigh on feature maps with a known, well
separated spectrum (so the top three eigenvectors are well defined), the
eigenvectors signed so that the largest-magnitude entry is positive, and the
projections of the centred features. Two cases: C = 12 over 40 x 50 pixels
(every pixel used) and C = 5 over 200 x 100 pixels (more than the 16384
samples: every 2nd pixel in scan order enters the mean and covariance).

Run: /usr/bin/python3 tests/ref/featmaps.py --out build/ref
"""
import numpy as np
import torch

from common import out_dir, save


def case(rng, C, n, stride):
    basis = np.linalg.qr(rng.normal(size=(C, C)))[0]
    scales = np.array([5.0, 3.0, 2.0] + [0.3] * (C - 3))[:C]
    z = rng.normal(size=(C, n)) * scales[:, None]
    f = (basis @ z + rng.normal(size=(C, 1))).astype(np.float32)
    s = f[:, ::stride].astype(np.float64)
    cov = np.cov(s)  # rows are variables, ddof 1
    w, v = np.linalg.eigh(cov)
    order = np.argsort(w)[::-1][:3]
    proj = []
    for j in order:
        vec = v[:, j]
        if vec[np.argmax(np.abs(vec))] < 0:
            vec = -vec
        proj.append(vec @ (f.astype(np.float64) - s.mean(axis=1, keepdims=True)))
    return f, np.array(proj), w[order]


def main():
    out = out_dir()
    rng = np.random.default_rng(7)
    t = {}
    for k, (C, n, stride) in enumerate([(12, 40 * 50, 1), (5, 200 * 100, 2)]):
        f, proj, ev = case(rng, C, n, stride)
        t[f"c{k}_f"] = torch.from_numpy(f)
        t[f"c{k}_proj"] = torch.from_numpy(proj)
        t[f"c{k}_evals"] = torch.from_numpy(ev.copy())
        print(f"case {k}: C {C}, n {n}, eigenvalues {ev}")
    save("featmaps", t, out)


if __name__ == "__main__":
    main()
