#!/usr/bin/python3
"""Trains the same MLP on the same Fashion-MNIST minibatches with backprop's fashion_mnist demo
and with PyTorch, and compares the loss of every step.

Usage: fashion_torch_match.py FASHION_MNIST_BINARY [SOURCE_ROOT]

Writes initial weights for a 784-32-10 relu MLP and a 784-64-32-10 tanh MLP into safetensors
files (with json and numpy: Debian has no safetensors package), runs the demo on them with
--init --no-shuffle
--no-validation --dropout 0 --limit 6400 --log-steps 100 --json (100 minibatches of 64 in
file order), and runs the PyTorch loop over the same batches: nn.Sequential(Linear, ReLU,
Linear) or (Linear, Tanh, Linear, Tanh, Linear), cross-entropy (the mean over the batch), SGD with momentum 0.9 or Adam.  The lecture's
momentum (v <- -lr g + gamma v) and PyTorch's (b <- gamma b + g) are the same trajectory at a
constant rate, so the step losses must agree:

  float64: every one of the 100 steps to 1e-8 relative;
  float32: the first 20 steps to 1e-5 relative (later ones drift apart from rounding alone).

Inputs are pixel * (1/255) computed in float64 as the demo's loader does, then rounded to
float32 for the float32 runs.  Prints the largest relative difference of each run.
Exit status: 0 all match, 1 a mismatch or a failed run, 77 (skip) without torch or numpy or
without the dataset (Debian's python3-torch and dataset-fashion-mnist).
"""
import gzip
import json
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import torch
except ImportError as e:
    print(f"SKIP: {e}: install Debian's python3-torch and run with /usr/bin/python3")
    sys.exit(77)

DATA = "/usr/share/datasets/fashion-mnist"
# (hidden widths, activation): PyTorch's module and the demo's --activation
ARCHS = [((32,), "relu"), ((64, 32), "tanh")]
ACTIVATIONS = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh}
BATCH = 64
STEPS = 100
LIMIT = BATCH * STEPS
# (dtype, steps compared, relative tolerance)
CHECKS = [("float64", STEPS, 1e-8), ("float32", 20, 1e-5)]
OPTIMIZERS = [("sgd", 0.05), ("adam", 0.001)]


def read_idx(path, count):
    """The first count items of a (gzipped) IDX file of unsigned bytes, as a uint8 array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        head = f.read(4)
        if head[:2] != b"\0\0" or head[2] != 0x08:
            raise ValueError(f"{path}: not an IDX file of unsigned bytes")
        dims = [int.from_bytes(f.read(4), "big") for _ in range(head[3])]
        size = int(np.prod(dims[1:], dtype=np.int64)) if len(dims) > 1 else 1
        data = np.frombuffer(f.read(count * size), dtype=np.uint8)
    return data.reshape([count] + dims[1:])


def find(name):
    for candidate in (f"{DATA}/{name}.gz", f"{DATA}/{name}"):
        if os.access(candidate, os.R_OK):
            return candidate
    return None


def write_safetensors(path, tensors):
    """name -> numpy array (float32 or float64), in the order given."""
    header, blobs, offset = {}, [], 0
    codes = {np.dtype("float32"): "F32", np.dtype("float64"): "F64"}
    for name, a in tensors.items():
        raw = np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": codes[a.dtype], "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for raw in blobs:
            f.write(raw)


def make_model(hidden, act):
    """nn.Sequential(Linear, activation, ..., Linear): parameters 0.weight, 0.bias, 2.weight, ..."""
    sizes, layers = [784] + list(hidden) + [10], []
    for i in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(hidden):
            layers.append(ACTIVATIONS[act]())
    return torch.nn.Sequential(*layers)


def initial_weights(hidden, act, dtype):
    """PyTorch's default initialisation of the layers, seeded."""
    torch.manual_seed(7)
    model = make_model(hidden, act)
    np_dtype = np.float64 if dtype == "float64" else np.float32
    return {name: p.detach().double().numpy().astype(np_dtype) for name, p in model.state_dict().items()}


def run_demo(binary, init_path, act, dtype, optimizer, lr):
    args = [binary, "--init", init_path, "--activation", act, "--no-shuffle", "--no-validation", "--dropout", "0",
            "--limit", str(LIMIT), "--epochs", "1", "--batch", str(BATCH), "--log-steps", str(STEPS),
            "--dtype", dtype, "--optimizer", optimizer, "--lr", str(lr), "--svg", "", "--json"]
    if optimizer == "sgd":
        args += ["--momentum", "0.9"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: exit status {r.returncode}\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1]), " ".join(args)


def run_torch(weights, hidden, act, images, labels, dtype, optimizer, lr):
    tdtype = torch.float64 if dtype == "float64" else torch.float32
    model = make_model(hidden, act).to(tdtype)
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in weights.items()}, strict=True)
    if optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=lr)
    # pixel * (1/255) in float64, as nn_idx_dataset computes it, then rounded to the dtype
    x_all = torch.from_numpy((images.reshape(LIMIT, 784).astype(np.float64) * (1.0 / 255.0))).to(tdtype)
    y_all = torch.from_numpy(labels.astype(np.int64))
    losses = []
    for step in range(STEPS):
        x, y = x_all[step * BATCH:(step + 1) * BATCH], y_all[step * BATCH:(step + 1) * BATCH]
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    binary = sys.argv[1]
    images_path, labels_path = find("train-images-idx3-ubyte"), find("train-labels-idx1-ubyte")
    if not images_path or not labels_path:
        print(f"SKIP: no Fashion-MNIST in {DATA}: apt-get install dataset-fashion-mnist")
        return 77
    images, labels = read_idx(images_path, LIMIT), read_idx(labels_path, LIMIT)
    torch.set_num_threads(2)
    failed = False
    with tempfile.TemporaryDirectory(prefix="fashion_torch_") as tmp:
        for (hidden, act), (dtype, compared, tol) in [(a, c) for a in ARCHS for c in CHECKS]:
            weights = initial_weights(hidden, act, dtype)
            arch = "-".join(str(k) for k in [784, *hidden, 10]) + " " + act
            init_path = os.path.join(tmp, f"init_{arch.replace(' ', '_')}_{dtype}.safetensors")
            write_safetensors(init_path, weights)
            for optimizer, lr in OPTIMIZERS:
                ours, command = run_demo(binary, init_path, act, dtype, optimizer, lr)
                theirs = run_torch(weights, hidden, act, images, labels, dtype, optimizer, lr)
                steps = ours["step_loss"]
                if len(steps) != STEPS or ours["epochs"] != 1:
                    print(f"FAIL {arch} {dtype} {optimizer}: {len(steps)} step losses and {ours['epochs']} epochs "
                          f"from `{command}`, expected {STEPS} and 1")
                    failed = True
                    continue
                rel = [abs(a - b) / abs(b) for a, b in zip(steps, theirs)]
                worst = max(range(compared), key=lambda i: rel[i])
                ok = rel[worst] <= tol
                failed |= not ok
                print(f"{'ok  ' if ok else 'FAIL'} {arch:17s} {dtype} {optimizer:4s} lr {lr:<5g}: steps 1-{compared}: "
                      f"largest relative difference {rel[worst]:.2e} at step {worst + 1} (tolerance {tol:g}); "
                      f"loss {theirs[0]:.4f} -> {theirs[compared - 1]:.4f}; all {STEPS} steps: {max(rel):.2e}")
                if not ok:
                    for i in range(compared):
                        print(f"    step {i + 1:3d}: ours {steps[i]:.17g}  torch {theirs[i]:.17g}  rel {rel[i]:.2e}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
