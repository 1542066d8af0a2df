#!/usr/bin/python3
"""backprop's tensor ops against PyTorch's, in float64.

Usage: ops_torch.py OPS_TORCH_DRIVER

The driver (tests/ops_torch_driver.c) prints each case's inputs, output and the gradients of
L = sum(W * output) for its weights W.  Here the case's PyTorch twin, looked up by the case's
name in TWINS, is run on the same inputs: the output's shape must be the same, its values and
the gradients equal to 1e-12 relative (|ours - torch| <= 1e-12 max(1, |torch|)), and an input
that gets no gradient here must get none (or zeros) there.  A case without a twin fails, so a
new op gets its twin in this one place.

Exit status: 0 all match, 1 a mismatch or a failed run, 77 (skip) without torch.
"""
import json
import subprocess
import sys

try:
    import torch
    import torch.nn.functional as F
except ImportError as e:
    print(f"SKIP: {e}: install Debian's python3-torch and run with /usr/bin/python3")
    sys.exit(77)

TOL = 1e-12

# name -> function of the input tensors (a list), as the driver's builder of that name.
TWINS = {
    "softmax(x0, 1)": lambda x: torch.softmax(x[0], 1),
    "matmul": lambda x: torch.matmul(x[0], x[1]),
    "where(x0 > x1, x0, x2)": lambda x: torch.where(x[0] > x[1], x[0], x[2]),
    # indexing and shapes: index.c, shape.c, matmul.c

    # reductions along an axis and losses: reduce.c, loss.c

    # convolution and pooling: conv.c
    "F.conv2d(x0, x1, x2, padding=1)": lambda x: F.conv2d(x[0], x[1], x[2], padding=1),
    "F.conv2d(x0, x1, stride=2, padding=1, dilation=2, groups=2)":
        lambda x: F.conv2d(x[0], x[1], stride=2, padding=1, dilation=2, groups=2),
    "F.conv2d(x0, x1, x2, stride=(2,1), padding=(0,2), dilation=(1,3))":
        lambda x: F.conv2d(x[0], x[1], x[2], stride=(2, 1), padding=(0, 2), dilation=(1, 3)),
    "F.conv2d(x0, x1, x2) 1x1": lambda x: F.conv2d(x[0], x[1], x[2]),
    "F.conv1d(x0, x1, x2, stride=2, padding=1, dilation=2, groups=2)":
        lambda x: F.conv1d(x[0], x[1], x[2], stride=2, padding=1, dilation=2, groups=2),
    "F.max_pool2d(x0, 2)": lambda x: F.max_pool2d(x[0], 2),
    "F.max_pool2d(x0, 3, stride=(2,1), padding=1)": lambda x: F.max_pool2d(x[0], 3, stride=(2, 1), padding=1),
    "F.max_pool2d(x0, 3, stride=(2,1), padding=1) ties": lambda x: F.max_pool2d(x[0], 3, stride=(2, 1), padding=1),
    "F.max_pool2d(x0, 2) ties": lambda x: F.max_pool2d(x[0], 2),
    "F.max_pool2d(x0, (3,2), stride=1, padding=1, dilation=2)":
        lambda x: F.max_pool2d(x[0], (3, 2), stride=1, padding=1, dilation=2),
    "F.avg_pool2d(x0, 2)": lambda x: F.avg_pool2d(x[0], 2),
    "F.avg_pool2d(x0, (3,2), stride=(2,1), padding=1)": lambda x: F.avg_pool2d(x[0], (3, 2), stride=(2, 1), padding=1),

    # normalisation: norm.c

}


def tensor(a):
    return torch.tensor(a["data"], dtype=torch.float64).reshape(a["shape"])


def worst(ours, theirs):
    d = (ours - theirs).abs() / theirs.abs().clamp(min=1.0)
    return d.max().item() if d.numel() else 0.0


def check(case):
    name = case["name"]
    if name not in TWINS:
        return [f"{name}: no PyTorch twin in TWINS"]
    xs = [tensor(i["x"]).requires_grad_() for i in case["inputs"]]
    y = TWINS[name](xs)
    ours = tensor(case["output"])
    if list(y.shape) != case["output"]["shape"]:
        return [f"{name}: shape {case['output']['shape']}, torch {list(y.shape)}"]
    errors = []
    e = worst(ours, y.detach())
    if e > TOL:
        errors.append(f"{name}: output differs by {e:.3g}")
    w = torch.tensor(case["weights"], dtype=torch.float64).reshape(y.shape)
    grads = torch.autograd.grad((y * w).sum(), xs, allow_unused=True)
    for i, (g_ours, g_torch) in enumerate(zip(case["grads"], grads)):
        if g_ours is None:
            if g_torch is not None and g_torch.abs().max().item() != 0:
                errors.append(f"{name}: input {i} gets no gradient here, torch's is nonzero")
            continue
        if g_torch is None:
            g_torch = torch.zeros(g_ours["g"]["shape"], dtype=torch.float64)
        e = worst(tensor(g_ours["g"]), g_torch)
        if e > TOL:
            errors.append(f"{name}: gradient of input {i} differs by {e:.3g}")
    print(f"{name}: {'ok' if not errors else 'MISMATCH'}")
    return errors


def main():
    out = subprocess.run([sys.argv[1]], capture_output=True, text=True)
    if out.returncode != 0:
        print(out.stderr)
        return 1
    errors = []
    for case in json.loads(out.stdout):
        errors += check(case)
    for e in errors:
        print("FAIL:", e)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
