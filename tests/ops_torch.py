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
    "index_select(x0, 1, [2, 0, 2, 3])": lambda x: torch.index_select(x[0], 1, torch.tensor([2, 0, 2, 3])),
    "gather(x0, 1, [[3, 0, 3], [3, 1, 1]])": lambda x: torch.gather(x[0], 1, torch.tensor([[3, 0, 3], [3, 1, 1]])),
    "embedding([[4, 0, 4], [0, 2, 1]], x0)": lambda x: F.embedding(torch.tensor([[4, 0, 4], [0, 2, 1]]), x[0]),
    "stack(x0, x1, x2; 1)": lambda x: torch.stack(x, 1),
    "stack of scalars": lambda x: torch.stack(x),
    "x0.permute(2, 0, 1)": lambda x: x[0].permute(2, 0, 1),
    "x0[:, 1:7:2]": lambda x: x[0][:, 1:7:2],
    "x0 * x1.detach()": lambda x: x[0] * x[1].detach(),
    "matmul [4] x [4]": lambda x: torch.matmul(x[0], x[1]),
    "matmul [3] x [3,5]": lambda x: torch.matmul(x[0], x[1]),
    "matmul [2,3,4] x [4]": lambda x: torch.matmul(x[0], x[1]),
    "matmul [3] x [2,3,4]": lambda x: torch.matmul(x[0], x[1]),
    "matmul [2,1,3,4] x [5,4,6]": lambda x: torch.matmul(x[0], x[1]),

    # reductions along an axis and losses: reduce.c, loss.c
    "torch.max(x0, 1).values": lambda x: torch.max(x[0], 1).values,
    "torch.min(x0, -1, keepdim=True).values": lambda x: torch.min(x[0], -1, keepdim=True).values,
    "x0 * torch.argmax(x0, 1, keepdim=True)": lambda x: x[0] * torch.argmax(x[0], 1, keepdim=True).to(x[0].dtype),
    "x0 * torch.argmin(x0, 0)": lambda x: x[0] * torch.argmin(x[0], 0).to(x[0].dtype),
    "torch.logsumexp(x0, 1)": lambda x: torch.logsumexp(x[0], 1),
    "torch.logsumexp(x0, -1, keepdim=True) of large values": lambda x: torch.logsumexp(x[0], -1, keepdim=True),
    "F.binary_cross_entropy_with_logits(x0, sigmoid(x1))":
        lambda x: F.binary_cross_entropy_with_logits(x[0], torch.sigmoid(x[1])),

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
    "F.layer_norm(x0, [4], x1, x2)": lambda x: F.layer_norm(x[0], [4], x[1], x[2], 1e-5),
    "F.layer_norm(x0, [3, 4], eps=1e-3)": lambda x: F.layer_norm(x[0], [3, 4], eps=1e-3),
    "F.batch_norm(x0, None, None, x1, x2, training=True)":
        lambda x: F.batch_norm(x[0], None, None, x[1], x[2], True, 0.1, 1e-5),
    "F.batch_norm(x0, mean, var, x1, x2) in evaluation":
        lambda x: F.batch_norm(x[0], torch.tensor([0.3, -0.1, 1.2], dtype=torch.float64),
                               torch.tensor([0.5, 2.0, 0.8], dtype=torch.float64), x[1], x[2], False, 0.1, 1e-5),
    "F.batch_norm training, then its running statistics": lambda x: batch_norm_running(x),

}


# The output flattened, then the running statistics that the call updated (from torch's
# initial zeros and ones, momentum 0.3).
def batch_norm_running(x):
    mean, var = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    y = F.batch_norm(x[0], mean, var, x[1], x[2], True, 0.3, 1e-5)
    return torch.cat([y.flatten(), mean, var])


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
