#!/usr/bin/python3
"""One Fashion-MNIST epoch in PyTorch and in backprop, timed in the same run.

    /usr/bin/python3 tests/bench/fashion_torch.py [--bench build/tests/bench/bench_fashion_epoch]
        [--batch 64,1024,8] [--threads 1,2] [--repeat 3]
    /usr/bin/python3 tests/bench/fashion_torch.py --model cnn [--cnn build/demos/fashion_cnn]
        [--batch 64] [--threads 1] [--repeat 2] [--limit N]

With --model cnn both sides train fashion_cnn's network instead (Conv2d(1,32,3,padding=1),
ReLU, MaxPool2d(2), Conv2d(32,64,3,padding=1), ReLU, MaxPool2d(2), Flatten, Linear(3136,128),
ReLU, Linear(128,10)); backprop's side is the fashion_cnn demo itself (--epochs 1
--no-validation), whose reported training seconds are its figure, and --limit trains both on
the first N images only.

Both sides train the same model on the same data: an MLP 784-256-128-10 with ReLU, float32,
softmax + cross-entropy, SGD with momentum 0.9 (PyTorch's form) at rate 0.01, shuffled
minibatches, pixels / 255, no dropout, gradients zeroed by dropping them (set_to_none, as
backprop's lazy zeroing).  PyTorch's time is one epoch over tensors already in memory (the
loader is not timed), its threads set by torch.set_num_threads.  Debian's OpenBLAS
does not recognise this CPU's AVX-512 and falls back to SSE3 kernels, so OPENBLAS_CORETYPE is
set to SkylakeX before torch loads (pass --no-coretype to time it as installed).

The machine's speed drifts (other jobs, turbo), so the two sides alternate: for each case,
one PyTorch epoch, then one backprop epoch (a run of the C benchmark), R times; each side's
figure is the median of its R epochs.  Prints `bench: torch_epoch_bB_tT S s`,
`bench: fashion_epoch_bB_tT S s` and `bench: fashion_epoch_ratio_bB_tT R x` (backprop /
PyTorch; below 1 is faster) for each case, then two threads over one and backprop's peak RSS.
For the MLP it also prints each side's fraction of the machine's peak,
`bench: torch_epoch_bB_tT_peak_fraction F` and `bench: fashion_epoch_bB_tT_peak_fraction F`:
the epoch's FLOPs (matrix products only) over its median time, over T times one core's float32
FMA peak, both read from what bench_fashion_epoch prints (`fashion_epoch_gflop`, and
`peak_f32_gflops`, measured in each of its runs: the best of them is used, the machine being
at its fastest in the quietest one).
Exit status 2 when torch or the dataset is missing.
"""
import argparse
import gzip
import os
import re
import statistics
import struct
import subprocess
import sys
import time

DATA = "/usr/share/datasets/fashion-mnist"


def ints(s):
    return [int(v) for v in s.split(",")]


def idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return dims, raw[4 + 4 * ndim:]


def main():
    ap = argparse.ArgumentParser(description="Fashion-MNIST epoch: PyTorch vs backprop")
    ap.add_argument("--bench", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                    "../../build/tests/bench/bench_fashion_epoch"))
    ap.add_argument("--batch", type=ints)
    ap.add_argument("--threads", type=ints)
    ap.add_argument("--repeat", type=int)
    ap.add_argument("--data", default=DATA)
    ap.add_argument("--no-coretype", action="store_true")
    ap.add_argument("--model", choices=["mlp", "cnn"], default="mlp")
    ap.add_argument("--cnn", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "../../build/demos/fashion_cnn"))
    ap.add_argument("--limit", type=int, default=0)
    a = ap.parse_args()
    cnn = a.model == "cnn"
    a.batch = a.batch or ([64] if cnn else [64, 1024, 8])
    a.threads = a.threads or ([1] if cnn else [1, 2])
    a.repeat = a.repeat or (2 if cnn else 3)
    if not a.no_coretype:
        os.environ["OPENBLAS_CORETYPE"] = "SkylakeX"
    try:
        import torch
    except ImportError:
        print("fashion_torch: needs Debian's python3-torch (run with /usr/bin/python3)", file=sys.stderr)
        return 2
    try:
        (n, rows, cols), images = idx(os.path.join(a.data, "train-images-idx3-ubyte.gz"))
        _, labels = idx(os.path.join(a.data, "train-labels-idx1-ubyte.gz"))
    except OSError as e:
        print(f"fashion_torch: {e} (apt-get install dataset-fashion-mnist)", file=sys.stderr)
        return 2
    x = torch.frombuffer(bytearray(images), dtype=torch.uint8).reshape(n, rows * cols).float() / 255
    y = torch.frombuffer(bytearray(labels), dtype=torch.uint8).long()
    if a.limit and a.limit < n:
        n, x, y = a.limit, x[:a.limit], y[:a.limit]
    if cnn:
        x = x.reshape(n, 1, rows, cols)
    print(f"PyTorch {torch.__version__}, OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}, "
          f"{n} images, median of {a.repeat}")

    def epoch(batch):
        torch.manual_seed(1)
        nn = torch.nn
        if cnn:
            model = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                  nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10))
        else:
            model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        lossf = torch.nn.CrossEntropyLoss()
        perm = torch.randperm(n)
        t0 = time.perf_counter()
        for i in range(0, n, batch):
            j = perm[i:i + batch]
            opt.zero_grad(set_to_none=True)  # what backprop does (and PyTorch 2 by default)
            loss = lossf(model(x[j]), y[j])
            loss.backward()
            opt.step()
        return time.perf_counter() - t0, loss.item()

    env = dict(os.environ)
    env.pop("OPENBLAS_CORETYPE", None)

    def ours(batch, threads):
        if cnn:
            cmd = [a.cnn, "--epochs", "1", "--no-validation", "--batch", str(batch), "--threads", str(threads),
                   "--svg", "", "--json"] + (["--limit", str(a.limit)] if a.limit else [])
            out = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                 check=True).stdout
            return float(re.search(r'"seconds": ([\d.]+)', out).group(1)), 0.0
        cmd = [a.bench, "--batch", str(batch), "--threads", str(threads), "--repeat", "1"]
        out = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True, check=True).stdout
        s = re.search(r"fashion_epoch_b\d+_t\d+ ([\d.]+) s", out)
        rss = re.search(r"fashion_peak_rss ([\d.]+) MiB", out)
        for key in ("peak_f32_gflops", "fashion_epoch_gflop"):
            v = re.search(rf"bench: {key} ([\d.]+)", out)
            if v:
                machine[key] = max(machine.get(key, 0.0), float(v.group(1)))
        return float(s.group(1)), float(rss.group(1)) if rss else 0.0

    med = {}
    peak = 0.0
    machine = {}  # the C benchmark's peak_f32_gflops (best of its runs) and fashion_epoch_gflop
    torch_med = {}
    for t in a.threads:
        torch.set_num_threads(t)
        for b in a.batch:
            ts, cs = [], []
            for _ in range(a.repeat):
                ts.append(epoch(b)[0])
                try:
                    s, rss = ours(b, t)
                except (OSError, subprocess.CalledProcessError, AttributeError) as e:
                    print(f"fashion_torch: {a.cnn if cnn else a.bench}: {e}", file=sys.stderr)
                    return 1
                cs.append(s)
                peak = max(peak, rss)
            med[b, t] = statistics.median(cs)
            tm = statistics.median(ts)
            tag = "cnn_" if cnn else ""
            print(f"bench: torch_{tag}epoch_b{b}_t{t} {tm:.3f} s  (runs {', '.join(f'{x:.3f}' for x in ts)})")
            print(f"bench: fashion_{tag}epoch_b{b}_t{t} {med[b, t]:.3f} s  (runs {', '.join(f'{x:.3f}' for x in cs)})")
            print(f"bench: fashion_{tag}epoch_ratio_b{b}_t{t} {med[b, t] / tm:.3f} x", flush=True)
            torch_med[b, t] = tm
    for b in a.batch:
        if (b, 1) in med and (b, 2) in med:
            print(f"bench: fashion_epoch_two_threads_b{b} {med[b, 2] / med[b, 1]:.3f} x of one thread")
    if not cnn:
        print(f"bench: fashion_peak_rss {peak:.1f} MiB")
        if "peak_f32_gflops" in machine and "fashion_epoch_gflop" in machine:
            flop, one_core = machine["fashion_epoch_gflop"], machine["peak_f32_gflops"]
            print(f"fashion_torch: fractions of threads x one core's f32 FMA peak (the best of backprop's runs), "
                  f"an epoch being {flop:.3f} GFLOP of matrix products")
            print(f"bench: peak_f32_gflops {one_core:.1f}")
            for (b, t), tm in torch_med.items():
                for side, sec in (("torch", tm), ("fashion", med[b, t])):
                    print(f"bench: {side}_epoch_b{b}_t{t}_peak_fraction {flop / sec / (t * one_core):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
