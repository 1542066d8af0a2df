#!/usr/bin/python3
"""Loads models saved by backprop's nn_mlp_save into PyTorch and compares outputs.

Usage: nn_torch_interop.py DIR N

DIR holds model_K.safetensors (a model) and io_K.safetensors (inputs "x", our eval-mode
scores "scores", and for classifiers our softmax "probs", the sigmoid for one logit) for K in 0..N-1, written by
test_nn_interop.  Each model is rebuilt from its metadata alone as the torch.nn.Sequential
of the same layers, its parameters loaded by name with strict=True (so the names must be
PyTorch's), and its forward output compared with ours: 1e-5 for float32, 1e-12 for float64.

The files are read with json and numpy, since Debian has no safetensors package.
Exit status: 0 all match, 1 a mismatch, 77 (skip) without torch or numpy.
"""
import json
import sys

try:
    import numpy as np
    import torch
except ImportError as e:
    print(f"SKIP: {e}: install Debian's python3-torch")
    sys.exit(77)

DTYPES = {"F32": np.dtype("<f4"), "F64": np.dtype("<f8")}
TOLERANCE = {"F32": 1e-5, "F64": 1e-12}


def read_safetensors(path):
    """The tensors (name -> array) and metadata of a safetensors file."""
    with open(path, "rb") as f:
        blob = f.read()
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    tensors = {}
    for name, info in header.items():
        dt = DTYPES[info["dtype"]]
        begin, end = info["data_offsets"]
        a = np.frombuffer(blob, dtype=dt, count=(end - begin) // dt.itemsize, offset=8 + n + begin)
        tensors[name] = a.reshape(info["shape"]).copy()
    return tensors, meta


class LectureDropout(torch.nn.Module):
    """The lecture's dropout: units zeroed with probability p while training, activations
    multiplied by 1 - p at test time (torch.nn.Dropout is the inverted form)."""

    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, x):
        if self.training:
            return x * (torch.rand_like(x) >= self.p)
        return x * (1 - self.p)


def build(meta):
    """The torch.nn.Sequential that the metadata describes, module for module."""
    slope = float(meta["backprop.slope"])
    activation = {"relu": torch.nn.ReLU, "leaky_relu": lambda: torch.nn.LeakyReLU(slope),
                  "sigmoid": torch.nn.Sigmoid, "tanh": torch.nn.Tanh}[meta["backprop.act"]]
    inverted = meta["backprop.dropout_kind"] == "inverted"
    dropout = (lambda p: torch.nn.Dropout(p)) if inverted else LectureDropout
    hidden = [int(h) for h in meta["backprop.hidden"].split(",") if h]
    sizes = [int(meta["backprop.in"])] + hidden + [int(meta["backprop.out"])]
    p, p_in = float(meta["backprop.dropout"]), float(meta["backprop.input_dropout"])
    layers = [dropout(p_in)] if p_in > 0 else []
    for i in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(hidden):
            layers.append(activation())
            if p > 0:
                layers.append(dropout(p))
    model = torch.nn.Sequential(*layers)
    return model.double() if meta["backprop.dtype"] == "F64" else model


def check(directory, k):
    state, meta = read_safetensors(f"{directory}/model_{k}.safetensors")
    io, _ = read_safetensors(f"{directory}/io_{k}.safetensors")
    model = build(meta)
    model.load_state_dict({name: torch.from_numpy(a) for name, a in state.items()}, strict=True)
    model.eval()
    with torch.no_grad():
        scores = model(torch.from_numpy(io["x"]))
        worst = (scores - torch.from_numpy(io["scores"])).abs().max().item()
        if "probs" in io:
            probs = torch.sigmoid(scores) if scores.shape[1] == 1 else torch.softmax(scores, dim=1)
            worst = max(worst, (probs - torch.from_numpy(io["probs"])).abs().max().item())
    tol = TOLERANCE[meta["backprop.dtype"]]
    ok = worst <= tol
    print(f"model {k}: {meta['backprop.dtype']} {model}".replace("\n", " ")
          + f"\n  max |torch - backprop| = {worst:.3g} (tolerance {tol:g}): {'ok' if ok else 'MISMATCH'}")
    return ok


def main():
    directory, n = sys.argv[1], int(sys.argv[2])
    results = [check(directory, k) for k in range(n)]
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
