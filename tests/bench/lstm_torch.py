#!/usr/bin/python3
"""One LSTM training step in PyTorch and in backprop, timed in the same run.

    /usr/bin/python3 tests/bench/lstm_torch.py build/tests/bench/bench_lstm [--repeat 5]

Both sides run forward and backward of one torch.nn.LSTM(64, 256) layer over a sequence of
T = 32 steps of a batch of 32, float32, one thread, loss sum(y * r) for a fixed random r
(tests/bench/lstm.c).  The machine's speed drifts, so the sides alternate: one run of the C
benchmark (the median of its 20 steps), then 20 torch steps (their median), --repeat times;
each side's figure is the median over the rounds.  OPENBLAS_CORETYPE is set to SkylakeX before
torch loads, as fashion_torch.py does (Debian's OpenBLAS does not recognise this CPU's
AVX-512 and falls back to SSE3 kernels otherwise).  Prints `bench: lstm_step_ms X`,
`bench: lstm_step_replay_ms X`, `bench: lstm_step_torch_ms Y` and `bench: lstm_step_ratio R`
(ours recorded each step / torch; below 1 is faster), then each side's fraction of one core's
float32 FMA peak, `bench: lstm_step_peak_fraction F` and `bench: lstm_step_torch_peak_fraction
F`: the step's FLOPs (`lstm_step_gflop`) over its median time, over the peak
(`peak_f32_gflops`, the best of bench_lstm's runs), both as bench_lstm prints them.  Exit
status 77 without torch.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import time

os.environ.setdefault("OPENBLAS_CORETYPE", "SkylakeX")
try:
    import torch
except ImportError as e:
    print(f"SKIP: {e}: install Debian's python3-torch and run with /usr/bin/python3")
    sys.exit(77)

T, N, IN, H, STEPS = 32, 32, 64, 256, 20


def torch_round(lstm, x, r):
    times = []
    for _ in range(STEPS):
        t0 = time.perf_counter()
        lstm.zero_grad(set_to_none=True)
        y, _ = lstm(x)
        (y * r).sum().backward()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("bench")
    p.add_argument("--repeat", type=int, default=5)
    a = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(1)
    lstm = torch.nn.LSTM(IN, H)
    x, r = torch.rand(T, N, IN) * 2 - 1, torch.rand(T, N, H) * 2 - 1
    torch_round(lstm, x, r)  # warm-up
    ours, replay, theirs = [], [], []
    peak, gflop = 0.0, 0.0
    env = dict(os.environ, BACKPROP_THREADS="1")
    for _ in range(a.repeat):
        out = subprocess.run([a.bench, str(STEPS)], capture_output=True, text=True, env=env, check=True).stdout
        ours.append(float(re.search(r"lstm_step_ms ([0-9.]+)", out).group(1)))
        replay.append(float(re.search(r"lstm_step_replay_ms ([0-9.]+)", out).group(1)))
        peak = max(peak, float(re.search(r"bench: peak_f32_gflops ([0-9.]+)", out).group(1)))
        gflop = float(re.search(r"bench: lstm_step_gflop ([0-9.]+)", out).group(1))
        theirs.append(1e3 * torch_round(lstm, x, r))
    o, rp, t = statistics.median(ours), statistics.median(replay), statistics.median(theirs)
    print(f"bench: lstm_step_ms {o:.3f}")
    print(f"bench: lstm_step_replay_ms {rp:.3f}")
    print(f"bench: lstm_step_torch_ms {t:.3f}")
    print(f"bench: lstm_step_ratio {o / t:.3f}")
    print(f"bench: peak_f32_gflops {peak:.1f}")
    print(f"bench: lstm_step_peak_fraction {gflop / (o * 1e-3) / peak:.3f}")
    print(f"bench: lstm_step_torch_peak_fraction {gflop / (t * 1e-3) / peak:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
