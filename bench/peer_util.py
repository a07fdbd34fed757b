"""Timing helpers for bench/peer_<stem>.py (the PyTorch side of each op
benchmark): best-of-r wall time, printed as `BENCH <key> <ms>`."""
import argparse
import time

import torch


def setup():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    return a


def bench(key, fn, reps=5):
    fn()
    best = 1e30
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    print(f"BENCH {key} {best * 1e3:.4f}", flush=True)
