#!/usr/bin/python3
"""backprop --json on tensor formulas against PyTorch.

Usage: cli_torch_tensor.py BACKPROP

Each case is a formula over tensor values given as NumPy nesting (W=[[1,2],[3,4]]) and its
PyTorch twin: NumPy broadcasting ([2,3] + [3], [2,1] * [3], a number with a matrix), @ with
1-D operands as NumPy and torch.matmul take them ([k] @ [k] a number, [m,k] @ [k] and
[k] @ [k,n] vectors, a batch [B,m,k] @ [k]), sum and mean over all elements and along an axis,
softmax and log_softmax, and cross_entropy on one row and on a batch.  The values are drawn
from a fixed seed; the value and every gradient must agree with torch in float64 to 1e-12
relative.  Exit status: 0 all match, 1 a mismatch, 77 (skip) without torch.
"""
import json
import random
import subprocess
import sys

try:
    import torch
    import torch.nn.functional as F
except ImportError as e:
    print(f"SKIP: {e}: install Debian's python3-torch")
    sys.exit(77)

# (formula, {name: shape}, twin taking a dict of tensors)
CASES = [
    ("sum(A + b)", {"A": [2, 3], "b": [3]}, lambda t: (t["A"] + t["b"]).sum()),
    ("sum((A * c)^2)", {"A": [2, 3], "c": [2, 1]}, lambda t: ((t["A"] * t["c"]) ** 2).sum()),
    ("sum(u * v)", {"u": [2, 1], "v": [3]}, lambda t: (t["u"] * t["v"]).sum()),
    ("mean(exp(A) - 2*A/s)", {"A": [3, 2], "s": []}, lambda t: (torch.exp(t["A"]) - 2 * t["A"] / t["s"]).mean()),
    ("x@y", {"x": [4], "y": [4]}, lambda t: t["x"] @ t["y"]),
    ("sum(W@x)", {"W": [3, 4], "x": [4]}, lambda t: (t["W"] @ t["x"]).sum()),
    ("sum(tanh(x@W))", {"x": [3], "W": [3, 2]}, lambda t: torch.tanh(t["x"] @ t["W"]).sum()),
    ("sum(sigmoid(W@X))", {"W": [2, 3], "X": [3, 4]}, lambda t: torch.sigmoid(t["W"] @ t["X"]).sum()),
    ("sum((B@x)^2)", {"B": [2, 3, 4], "x": [4]}, lambda t: ((t["B"] @ t["x"]) ** 2).sum()),
    ("sum(x@B)", {"x": [3], "B": [2, 3, 4]}, lambda t: (t["x"] @ t["B"]).sum()),
    ("sum(B@M)", {"B": [2, 3, 4], "M": [4, 2]}, lambda t: (t["B"] @ t["M"]).sum()),
    ("sum(sum(A, 0) * mean(A, 1)@A)", {"A": [3, 3]},
     lambda t: (t["A"].sum(0) * t["A"].mean(1) @ t["A"]).sum()),  # * and @ bind alike, left to right
    ("sum(mean(A, -1)^2)", {"A": [2, 3]}, lambda t: (t["A"].mean(-1) ** 2).sum()),
    ("sum(softmax(z) * w)", {"z": [5], "w": [5]}, lambda t: (torch.softmax(t["z"], -1) * t["w"]).sum()),
    ("sum(softmax(Z, 0) * W)", {"Z": [3, 2], "W": [3, 2]}, lambda t: (torch.softmax(t["Z"], 0) * t["W"]).sum()),
    ("log_softmax(z)@w", {"z": [4], "w": [4]}, lambda t: torch.log_softmax(t["z"], -1) @ t["w"]),
    ("ce(z, 2)", {"z": [4]}, lambda t: F.cross_entropy(t["z"], torch.tensor(2))),
    ("ce(Z, y)", {"Z": [3, 4]}, lambda t: F.cross_entropy(t["Z"], torch.tensor([1, 0, 3]))),
    ("ce(W2@relu(W1@x + b1) + b2, 1)", {"W1": [4, 3], "b1": [4], "W2": [3, 4], "b2": [3], "x": [3]},
     lambda t: F.cross_entropy(t["W2"] @ torch.relu(t["W1"] @ t["x"] + t["b1"]) + t["b2"], torch.tensor(1))),
    ("ce(X@W + b, y) + 0.1*sum(W*W)", {"X": [5, 3], "W": [3, 4], "b": [4]},
     lambda t: F.cross_entropy(t["X"] @ t["W"] + t["b"], torch.tensor([0, 3, 1, 1, 2])) + 0.1 * (t["W"] * t["W"]).sum()),
]
LABELS = {"ce(Z, y)": "y=[1,0,3]", "ce(X@W + b, y) + 0.1*sum(W*W)": "y=[0,3,1,1,2]"}


def draw(rng, shape):
    if not shape:
        return round(rng.uniform(0.5, 2), 6)
    return [draw(rng, shape[1:]) for _ in range(shape[0])]


def close(a, b):
    return abs(a - b) <= 1e-12 * max(1.0, abs(b))


def flat(x):
    return [v for item in x for v in flat(item)] if isinstance(x, list) else [x]


def main():
    bp = sys.argv[1]
    rng = random.Random(20261130)
    failures = 0
    for formula, shapes, twin in CASES:
        values = {}
        for name, shape in shapes.items():
            v = draw(rng, shape)
            values[name] = [[-x for x in row] if i % 2 else row for i, row in enumerate(v)] if len(shape) == 2 else v
        args = [bp, "--json", formula] + [f"{k}={json.dumps(v)}".replace(" ", "") for k, v in values.items()]
        if formula in LABELS:
            args.append(LABELS[formula])
        run = subprocess.run(args, capture_output=True, text=True)
        if run.returncode:
            print(f"FAIL: {formula}: backprop exits {run.returncode}: {run.stderr.strip()}")
            failures += 1
            continue
        got = json.loads(run.stdout)
        t = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in values.items()}
        y = twin(t)
        y.backward()
        bad = not close(got["value"], y.item())
        for k in values:
            want = flat(t[k].grad.tolist()) if t[k].grad.dim() else [t[k].grad.item()]
            have = flat(got["gradient"][k])
            bad = bad or len(want) != len(have) or not all(close(a, b) for a, b in zip(have, want))
        if bad:
            print(f"FAIL: {formula}: backprop {got}, torch value {y.item()!r} gradients "
                  f"{ {k: t[k].grad.tolist() for k in t} }")
            failures += 1
    print(f"{len(CASES)} tensor formulas checked, {failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
