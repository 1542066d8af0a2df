#!/usr/bin/python3
"""backprop --json against PyTorch on every function the CLI knows.

Usage: cli_torch_ops.py BACKPROP

For each function that `backprop --functions` lists, a formula using it (alone, composed with
others, and with a variable used twice) is evaluated by the CLI and by torch in float64, and
the value and gradient must agree to 1e-12 relative.  A function the CLI lists that this file
does not know fails the test, so a new op gets its PyTorch twin in torch_twins.py.
Exit status: 0 all match, 1 a mismatch, 77 (skip) without torch.
"""
import json
import math
import subprocess
import sys

try:
    import torch
    from torch_twins import UNARY, BINARY
except ImportError as e:
    print(f"SKIP: {e}: install Debian's python3-torch")
    sys.exit(77)

TORCH = {**UNARY, **BINARY}
TENSOR_FUNCTIONS = {"sum", "mean", "softmax", "log_softmax", "ce"}

def run(bp, formula, values):
    args = [bp, "--json", formula] + [f"{k}={v!r}" for k, v in values.items() if k in formula]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def close(a, b):
    return abs(a - b) <= 1e-12 * max(1.0, abs(b))


def main():
    bp = sys.argv[1]
    listed = subprocess.run([bp, "--functions"], capture_output=True, text=True, check=True).stdout.split()
    failures = 0
    values = {"x": 0.3, "y": 1.7}
    for item in listed:
        name, args = item.split("(")
        if name in TENSOR_FUNCTIONS:  # cli_torch_tensor.py holds them against torch
            continue
        if name not in TORCH:
            print(f"FAIL: backprop knows {name} but this test has no PyTorch twin for it")
            failures += 1
            continue
        f = TORCH[name]
        if args == "x)":
            cases = [(f"{name}(x)", lambda t: f(t["x"])),
                     (f"{name}(x*y) + {name}(y)*x", lambda t: f(t["x"] * t["y"]) + f(t["y"]) * t["x"])]
        else:
            cases = [(f"{name}(x,y)", lambda t: f(t["x"], t["y"])),
                     (f"{name}(x,x*y) + exp(x)", lambda t: f(t["x"], t["x"] * t["y"]) + torch.exp(t["x"]))]
        for formula, ref in cases:
            got = run(bp, formula, values)
            t = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in values.items()}
            y = ref(t)
            if y.requires_grad:  # a comparison alone has no gradient in torch: 0 in ours
                y.backward()
            want = {"value": y.item(), "gradient": {k: t[k].grad.item() if t[k].grad is not None else 0.0
                                                    for k in t}}
            ok = close(got["value"], want["value"]) and all(
                close(got["gradient"][k], want["gradient"][k]) for k in got["gradient"])
            if not ok:
                print(f"FAIL: {formula}: backprop {got}, torch {want}")
                failures += 1
    print(f"{len(listed)} functions checked, {failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
