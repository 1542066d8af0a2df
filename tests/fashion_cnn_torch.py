#!/usr/bin/python3
"""Trains fashion_cnn's network on the same Fashion-MNIST minibatches with the demo and with
PyTorch, compares the loss of every step, and loads the demo's saved model into PyTorch.

Usage: fashion_cnn_torch.py FASHION_CNN_BINARY

PyTorch's nn.Sequential(Conv2d(1,32,3,padding=1), ReLU, MaxPool2d(2), Conv2d(32,64,3,padding=1),
ReLU, MaxPool2d(2), Flatten, Linear(3136,128), ReLU, Linear(128,10)) is initialised (seeded)
and its state dict written as safetensors; the demo starts from that file (--init, a PyTorch
file loaded back) and trains 50 minibatches of 32 in file order in float64 with SGD and
momentum 0.9, saving the result (--save); PyTorch trains the same batches.  Checks:

  every step's loss agrees to 1e-8 relative;
  the demo's file loads into the module with load_state_dict(strict=True), and its weights
  equal PyTorch's after the 50 steps to 1e-9 relative (max-norm per tensor).

Exit status: 0 all match, 1 a mismatch or a failed run, 77 (skip) without torch or numpy or
without the dataset.
"""
import json
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import torch
    from fashion_torch_match import find, read_idx, write_safetensors
    from nn_torch_interop import read_safetensors
except ImportError as e:
    print(f"SKIP: {e}: install Debian's python3-torch and run with /usr/bin/python3")
    sys.exit(77)

BATCH, STEPS, LR, MOMENTUM = 32, 50, 0.01, 0.9
LIMIT = BATCH * STEPS
STEP_TOL, WEIGHT_TOL = 1e-8, 1e-9


def make_model():
    nn = torch.nn
    return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10)).double()


def main():
    binary = sys.argv[1]
    images_path, labels_path = find("train-images-idx3-ubyte"), find("train-labels-idx1-ubyte")
    if not images_path or not labels_path:
        print("SKIP: no Fashion-MNIST: apt-get install dataset-fashion-mnist")
        return 77
    images, labels = read_idx(images_path, LIMIT), read_idx(labels_path, LIMIT)
    torch.set_num_threads(2)
    torch.manual_seed(11)
    model = make_model()
    init = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    with tempfile.TemporaryDirectory(prefix="fashion_cnn_torch_") as tmp:
        init_path, saved_path = os.path.join(tmp, "init.safetensors"), os.path.join(tmp, "trained.safetensors")
        write_safetensors(init_path, init)
        args = [binary, "--init", init_path, "--no-shuffle", "--no-validation", "--limit", str(LIMIT), "--epochs", "1",
                "--batch", str(BATCH), "--log-steps", str(STEPS), "--dtype", "float64", "--optimizer", "sgd",
                "--lr", str(LR), "--momentum", str(MOMENTUM), "--svg", "", "--save", saved_path, "--json",
                "--test-limit", "100"]
        r = subprocess.run(args, capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            print(f"FAIL: {' '.join(args)}: exit status {r.returncode}\n{r.stderr}")
            return 1
        ours = json.loads(r.stdout.strip().splitlines()[-1])["step_loss"]
        saved, meta = read_safetensors(saved_path)
        saved = {k: v.astype(np.float64) for k, v in saved.items()}

    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    x_all = torch.from_numpy(images.reshape(LIMIT, 1, 28, 28).astype(np.float64) * (1.0 / 255.0))
    y_all = torch.from_numpy(labels.astype(np.int64))
    theirs = []
    for step in range(STEPS):
        x, y = x_all[step * BATCH:(step + 1) * BATCH], y_all[step * BATCH:(step + 1) * BATCH]
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        theirs.append(loss.item())

    failed = False
    if len(ours) != STEPS:
        print(f"FAIL: {len(ours)} step losses, expected {STEPS}")
        return 1
    rel = [abs(a - b) / abs(b) for a, b in zip(ours, theirs)]
    worst = max(range(STEPS), key=lambda i: rel[i])
    ok = rel[worst] <= STEP_TOL
    failed |= not ok
    print(f"{'ok  ' if ok else 'FAIL'} step losses: largest relative difference {rel[worst]:.2e} at step {worst + 1} "
          f"(tolerance {STEP_TOL:g}); loss {theirs[0]:.4f} -> {theirs[-1]:.4f}")
    if not ok:
        for i in range(STEPS):
            print(f"    step {i + 1:3d}: ours {ours[i]:.17g}  torch {theirs[i]:.17g}  rel {rel[i]:.2e}")

    loaded = make_model()
    try:
        loaded.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in saved.items()}, strict=True)
        print(f"ok   the demo's file loads into nn.Sequential with load_state_dict(strict=True); metadata {meta}")
    except RuntimeError as e:
        print(f"FAIL load_state_dict: {e}")
        return 1
    for name, p in model.state_dict().items():
        q = loaded.state_dict()[name]
        d = ((q - p).abs().max() / p.abs().max().clamp(min=1e-300)).item()
        ok = d <= WEIGHT_TOL
        failed |= not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name:10s} {list(p.shape)}: trained weights differ by {d:.2e} (relative max-norm)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
