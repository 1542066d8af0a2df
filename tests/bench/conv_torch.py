#!/usr/bin/python3
"""Convolution and pooling in PyTorch and in backprop, one thread each, in the same run.

    /usr/bin/python3 tests/bench/conv_torch.py [--bench build/tests/bench/bench_conv]
        [--repeat 5] [--iters 10]

The cases of tests/bench/conv.c, at the Fashion-MNIST CNN's shapes, batch 64, float32: each
step runs y = op(x, ...), L = y.sum(), L.backward() with x, w and b requiring gradients (dx,
dW, db), gradients dropped between steps.  PyTorch runs on one thread (torch.set_num_threads(1))
and backprop too (bench_conv --threads 1).  The machine's speed drifts, so the sides
alternate: R rounds of (PyTorch's K steps per case, then one run of bench_conv with R = 1);
each figure is the median of its R rounds.  Prints `bench: NAME_ms`, `bench: NAME_torch_ms`
and `bench: NAME_ratio` (backprop / PyTorch; below 1 is faster) for conv2d_L1, conv2d_L2 and
max_pool2d.  For the convolutions also each side's fraction of one core's float32 FMA peak,
`bench: NAME_peak_fraction` and `bench: NAME_torch_peak_fraction`: the step's FLOPs
(`NAME_gflop`) over its median time, over the peak (`peak_f32_gflops`, the best of bench_conv's
runs), both as bench_conv prints them.  Exit status 2 without torch.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import time

CASES = {
    "conv2d_L1": ((64, 1, 28, 28), (32, 1, 3, 3)),
    "conv2d_L2": ((64, 32, 14, 14), (64, 32, 3, 3)),
    "max_pool2d": ((64, 32, 28, 28), None),
}


def main():
    ap = argparse.ArgumentParser(description="conv2d and max_pool2d: PyTorch vs backprop")
    ap.add_argument("--bench", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                    "../../build/tests/bench/bench_conv"))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--iters", type=int, default=10)
    a = ap.parse_args()
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        print("conv_torch: needs Debian's python3-torch (run with /usr/bin/python3)", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    print(f"PyTorch {torch.__version__}, one thread each, batch 64 float32, median of {a.repeat} rounds "
          f"of {a.iters} steps")

    def torch_ms(name):
        xs, ws = CASES[name]
        g = torch.Generator().manual_seed(1)
        x = (torch.rand(xs, generator=g) * 2 - 1).requires_grad_()
        w = (torch.rand(ws, generator=g) * 2 - 1).requires_grad_() if ws else None
        b = (torch.rand(ws[0], generator=g) * 2 - 1).requires_grad_() if ws else None
        for step in range(-2, a.iters):
            if step == 0:
                t0 = time.perf_counter()
            x.grad = None
            if ws:
                w.grad = b.grad = None
                y = F.conv2d(x, w, b, padding=1)
            else:
                y = F.max_pool2d(x, 2)
            y.sum().backward()
        return 1e3 * (time.perf_counter() - t0) / a.iters

    env = dict(os.environ, BACKPROP_THREADS="1")
    ours, theirs = {n: [] for n in CASES}, {n: [] for n in CASES}
    peak, gflop = 0.0, {}
    for _ in range(a.repeat):
        for n in CASES:
            theirs[n].append(torch_ms(n))
        try:
            out = subprocess.run([a.bench, "--threads", "1", "--repeat", "1", "--iters", str(a.iters)],
                                 env=env, stdout=subprocess.PIPE, text=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError) as e:
            print(f"conv_torch: {a.bench}: {e}", file=sys.stderr)
            return 1
        for n in CASES:
            ours[n].append(float(re.search(rf"bench: {n}_ms ([\d.]+)", out).group(1)))
            g = re.search(rf"bench: {n}_gflop ([\d.]+)", out)
            if g:
                gflop[n] = float(g.group(1))
        p = re.search(r"bench: peak_f32_gflops ([\d.]+)", out)
        peak = max(peak, float(p.group(1)) if p else 0.0)
    for n in CASES:
        o, t = statistics.median(ours[n]), statistics.median(theirs[n])
        print(f"bench: {n}_ms {o:.3f}  (runs {', '.join(f'{v:.2f}' for v in ours[n])})")
        print(f"bench: {n}_torch_ms {t:.3f}  (runs {', '.join(f'{v:.2f}' for v in theirs[n])})")
        print(f"bench: {n}_ratio {o / t:.3f} x", flush=True)
    if peak > 0:
        print(f"bench: peak_f32_gflops {peak:.1f}")
    for n in gflop:
        if peak > 0:
            o, t = statistics.median(ours[n]), statistics.median(theirs[n])
            print(f"bench: {n}_peak_fraction {gflop[n] / (o * 1e-3) / peak:.3f}")
            print(f"bench: {n}_torch_peak_fraction {gflop[n] / (t * 1e-3) / peak:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
