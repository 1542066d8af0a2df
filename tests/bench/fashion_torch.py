#!/usr/bin/python3
"""One Fashion-MNIST epoch in PyTorch and in backprop, timed in the same run.

    /usr/bin/python3 tests/bench/fashion_torch.py [--bench build/tests/bench/bench_fashion_epoch]
        [--batch 64,1024,8] [--threads 1,2] [--repeat 3]

Both sides train the same model on the same data: an MLP 784-256-128-10 with ReLU, float32,
softmax + cross-entropy, SGD with momentum 0.9 (PyTorch's form) at rate 0.01, shuffled
minibatches, pixels / 255, no dropout.  PyTorch's time is one epoch over tensors already in
memory (the loader is not timed), its threads set by torch.set_num_threads.  Debian's OpenBLAS
does not recognise this CPU's AVX-512 and falls back to SSE3 kernels, so OPENBLAS_CORETYPE is
set to SkylakeX before torch loads (pass --no-coretype to time it as installed).

Prints `bench: torch_epoch_bB_tT S s` for each case, runs the C benchmark with the same cases,
and prints `bench: fashion_epoch_ratio_bB_tT R x` (backprop / PyTorch; below 1 is faster).
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
    ap.add_argument("--batch", type=ints, default=[64, 1024, 8])
    ap.add_argument("--threads", type=ints, default=[1, 2])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--data", default=DATA)
    ap.add_argument("--no-coretype", action="store_true")
    a = ap.parse_args()
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
    print(f"PyTorch {torch.__version__}, OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}, "
          f"{n} images, median of {a.repeat}")

    def epoch(batch):
        torch.manual_seed(1)
        model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 128),
                                    torch.nn.ReLU(), torch.nn.Linear(128, 10))
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        lossf = torch.nn.CrossEntropyLoss()
        perm = torch.randperm(n)
        t0 = time.perf_counter()
        for i in range(0, n, batch):
            j = perm[i:i + batch]
            opt.zero_grad()
            loss = lossf(model(x[j]), y[j])
            loss.backward()
            opt.step()
        return time.perf_counter() - t0, loss.item()

    torch_s = {}
    for t in a.threads:
        torch.set_num_threads(t)
        for b in a.batch:
            times = [epoch(b) for _ in range(a.repeat)]
            torch_s[b, t] = statistics.median(s for s, _ in times)
            print(f"bench: torch_epoch_b{b}_t{t} {torch_s[b, t]:.3f} s  (last loss {times[-1][1]:.4f})", flush=True)

    cmd = [a.bench, "--batch", ",".join(map(str, a.batch)), "--threads", ",".join(map(str, a.threads)),
           "--repeat", str(a.repeat)]
    env = dict(os.environ)
    env.pop("OPENBLAS_CORETYPE", None)
    try:
        out = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"fashion_torch: {' '.join(cmd)}: {e}", file=sys.stderr)
        return 1
    sys.stdout.write(out)
    ours = {(int(b), int(t)): float(s) for b, t, s in re.findall(r"fashion_epoch_b(\d+)_t(\d+) ([\d.]+) s", out)}
    for (b, t), s in sorted(ours.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        if (b, t) in torch_s:
            print(f"bench: fashion_epoch_ratio_b{b}_t{t} {s / torch_s[b, t]:.3f} x")
    for b in a.batch:
        if (b, 1) in ours and (b, 2) in ours:
            print(f"bench: fashion_epoch_two_threads_b{b} {ours[b, 2] / ours[b, 1]:.3f} x of one thread")
    return 0


if __name__ == "__main__":
    sys.exit(main())
