#!/usr/bin/python3
"""The layers of any model (nn_model) against torch.nn through the state dict, in float64.

Usage: nn_layers_torch.py NN_LAYERS_TORCH_DRIVER

The driver writes the state dict of a model of every layer (Conv2d, BatchNorm2d, MaxPool2d,
Flatten, Linear, LayerNorm, Embedding) before and after one training forward, and its inputs,
outputs and gradients.  Here the same torch.nn modules load the first state dict with
load_state_dict(strict=True), run the same training forward and backward, and must give the
same output, the same gradient of every parameter, and the same state dict after it (batch
norm's running statistics and num_batches_tracked) as the driver's second file, which must
load strictly too; then the evaluation outputs must agree.  Tolerance 1e-12 relative to the
max-norm of each tensor, or absolute below 1 (conv's bias gets a zero gradient through batch
norm, which both sides compute as rounding noise).
Exit status: 0 all match, 1 a mismatch, 77 (skip) without torch or numpy.
"""
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import torch
    from nn_torch_interop import read_safetensors
except ImportError as e:
    print(f"SKIP: {e}: install Debian's python3-torch")
    sys.exit(77)

TOL = 1e-12
IDS = [3, 0, 6, 3]


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.conv, self.bn = nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3)
        self.fc1, self.ln, self.fc2 = nn.Linear(12, 5), nn.LayerNorm(5), nn.Linear(5, 2)
        self.emb = nn.Embedding(7, 5)

    def forward(self, x):
        h = torch.flatten(torch.nn.functional.max_pool2d(torch.relu(self.bn(self.conv(x))), 2), 1)
        h = self.fc1(h) + self.emb(torch.tensor(IDS))
        return self.fc2(torch.tanh(self.ln(h)))


def t(a):
    return torch.from_numpy(a.astype(np.float64))


def differ(ours, theirs):
    theirs = theirs.detach().double()
    return ((t(ours) - theirs).abs().max() / theirs.abs().max().clamp(min=1.0)).item()


def main():
    failed = False

    def check(name, ours, theirs):
        nonlocal failed
        d = differ(ours, theirs)
        ok = d <= TOL
        failed |= not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {d:.2e}")

    with tempfile.TemporaryDirectory(prefix="nn_layers_torch_") as tmp:
        r = subprocess.run([sys.argv[1], tmp], capture_output=True, text=True)
        if r.returncode != 0:
            print(r.stderr)
            return 1
        init, _ = read_safetensors(f"{tmp}/init.safetensors")
        trained, meta = read_safetensors(f"{tmp}/trained.safetensors")
        io, _ = read_safetensors(f"{tmp}/io.safetensors")
    net = Net().double()
    net.load_state_dict({k: t(v) for k, v in init.items()}, strict=True)
    print(f"ok   load_state_dict(strict=True) of the state dict as made ({len(init)} tensors)")
    net.train()
    y = net(t(io["x"]))
    check("training output", io["train_out"], y)
    (y * t(io["w"])).sum().backward()
    for name, p in net.named_parameters():
        check(f"gradient of {name}", io[f"grad.{name}"], p.grad)
    for name, v in net.state_dict().items():
        check(f"state after the forward: {name}", trained[name], v)
    after = Net().double()
    after.load_state_dict({k: t(v) for k, v in trained.items()}, strict=True)
    net.eval()
    check("evaluation output", io["eval_out"], net(t(io["x"])))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
