#!/usr/bin/python3
"""Trains the same character-level LSTM on the same batches with backprop's char_lstm demo and
with PyTorch, and compares the loss of every step.

Usage: char_lstm_torch.py CHAR_LSTM_BINARY

Builds torch's nn.Embedding(V, 8) -> nn.LSTM(8, 32) -> nn.Linear(32, V) in float64, writes its
initial state dict into a safetensors file (by hand: Debian has no safetensors package), runs
the demo with --init on it (--dtype float64 --json, 50 steps of 4 streams of 16 characters),
then trains the torch modules on the same batches: the first 90% of the text cut into 4
streams, 16 characters a step, the last state carried into the next step detached, the mean
cross-entropy, Adam and SGD.  Every step loss must agree to 1e-8 relative, and the model the
demo saved must load into the torch module with load_state_dict(strict=True) and hold the
torch run's final weights to 1e-8.
The text is Debian's fortunes (fortunes-min), else /usr/share/dict/words (wamerican).
Exit status: 0 all match, 1 a mismatch or a failed run, 77 (skip) without torch or a text.
"""
import json
import os
import subprocess
import sys
import tempfile

try:
    import torch
except ImportError as e:
    print(f"SKIP: {e}: install Debian's python3-torch and run with /usr/bin/python3")
    sys.exit(77)
# the safetensors writer and reader of the other torch comparisons (json and numpy)
from fashion_torch_match import write_safetensors
from nn_torch_interop import read_safetensors

TEXTS = ["/usr/share/games/fortunes/fortunes", "/usr/share/dict/words"]
LIMIT, BATCH, SEQ, EMBED, HIDDEN, STEPS = 6000, 4, 16, 8, 32, 50
OPTIMIZERS = [("adam", 0.01), ("sgd", 0.5)]
TOL = 1e-8


class CharLSTM(torch.nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, EMBED)
        self.lstm = torch.nn.LSTM(EMBED, HIDDEN)
        self.head = torch.nn.Linear(HIDDEN, vocab)

    def forward(self, ids, state):
        y, state = self.lstm(self.embed(ids), state)
        return self.head(y.reshape(-1, HIDDEN)), state


def batches(text, vocab):
    """The demo's batches: 4 streams over the first 90%, 16 characters a step, time first."""
    ids = torch.tensor([vocab.index(c) for c in text], dtype=torch.long)
    train = len(text) - int(len(text) * 0.1)
    seg = (train - 1) // BATCH
    per_epoch = seg // SEQ
    for k in range(STEPS):
        pos = k % per_epoch
        starts = [b * seg + pos * SEQ for b in range(BATCH)]
        x = torch.stack([ids[s:s + SEQ] for s in starts], dim=1)
        y = torch.stack([ids[s + 1:s + SEQ + 1] for s in starts], dim=1)
        yield pos == 0, x, y


def run_torch(model, text, vocab, optimizer, lr):
    opt = (torch.optim.Adam if optimizer == "adam" else torch.optim.SGD)(model.parameters(), lr=lr)
    losses, state = [], None
    for fresh, x, y in batches(text, vocab):
        if fresh:
            state = None
        opt.zero_grad()
        scores, (h, c) = model(x, state)
        loss = torch.nn.functional.cross_entropy(scores, y.reshape(-1))
        loss.backward()
        opt.step()
        state = (h.detach(), c.detach())
        losses.append(loss.item())
    return losses


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    binary = sys.argv[1]
    path = next((p for p in TEXTS if os.access(p, os.R_OK)), None)
    if not path:
        print("SKIP: no text: apt-get install fortunes-min (or wamerican)")
        return 77
    with open(path, "rb") as f:
        text = f.read(LIMIT)
    vocab = sorted(set(text))
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    failed = False
    with tempfile.TemporaryDirectory(prefix="char_lstm_torch_") as tmp:
        for optimizer, lr in OPTIMIZERS:
            torch.manual_seed(1)
            model = CharLSTM(len(vocab))
            init = os.path.join(tmp, "init.safetensors")
            saved = os.path.join(tmp, "saved.safetensors")
            write_safetensors(init, {k: v.detach().numpy() for k, v in model.state_dict().items()})
            command = [binary, "--data", path, "--limit", str(LIMIT), "--batch", str(BATCH), "--seq-len", str(SEQ),
                       "--embed", str(EMBED), "--hidden", str(HIDDEN), "--steps", str(STEPS), "--optimizer", optimizer,
                       "--lr", str(lr), "--dtype", "float64", "--init", init, "--save", saved, "--sample", "0",
                       "--threads", "1", "--json"]
            run = subprocess.run(command, capture_output=True, text=True)
            if run.returncode != 0:
                print(f"FAIL {optimizer}: `{' '.join(command)}` exited {run.returncode}: {run.stderr}")
                failed = True
                continue
            ours = json.loads(run.stdout.strip().splitlines()[-1])
            theirs = run_torch(model, text, vocab, optimizer, lr)
            steps = ours["step_loss"]
            if len(steps) != STEPS or ours["vocab"] != len(vocab):
                print(f"FAIL {optimizer}: {len(steps)} steps and {ours['vocab']} characters, expected {STEPS} and "
                      f"{len(vocab)}")
                failed = True
                continue
            rel = [abs(a - b) / abs(b) for a, b in zip(steps, theirs)]
            worst = max(range(STEPS), key=lambda i: rel[i])
            ok = rel[worst] <= TOL
            # the saved model is a state dict of the torch module, and holds torch's final weights
            fresh = CharLSTM(len(vocab))
            try:
                fresh.load_state_dict({k: torch.from_numpy(v) for k, v in read_safetensors(saved)[0].items()}, strict=True)
                werr = max(((a - b).abs().max() / b.abs().max()).item()
                           for a, b in zip(fresh.state_dict().values(), model.state_dict().values()))
            except RuntimeError as e:
                print(f"FAIL {optimizer}: the saved model does not load into torch: {e}")
                failed = True
                continue
            ok = ok and werr <= TOL
            failed |= not ok
            print(f"{'ok  ' if ok else 'FAIL'} {optimizer:4s} lr {lr:<5g}: {STEPS} steps, largest relative difference "
                  f"{rel[worst]:.2e} at step {worst + 1} (tolerance {TOL:g}); loss {theirs[0]:.4f} -> "
                  f"{theirs[-1]:.4f}; saved weights vs torch's {werr:.2e}")
            if not rel[worst] <= TOL:
                for i in range(STEPS):
                    print(f"    step {i + 1:3d}: ours {steps[i]:.17g}  torch {theirs[i]:.17g}  rel {rel[i]:.2e}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
