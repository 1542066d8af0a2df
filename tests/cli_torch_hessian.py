#!/usr/bin/python3
"""The held-out second-order check: backprop --json --hessian against PyTorch on random formulas.

Usage: cli_torch_hessian.py BACKPROP [COUNT [SEED]]

Builds COUNT (default 400) random formulas from every function that `backprop --functions`
lists and the operators + - * / ^, over one to four variables at random values, with a fixed
seed, and compares the CLI's value, gradient and Hessian with torch's in float64
(torch.autograd.grad and torch.autograd.functional.hessian).  Each number must agree to 1e-8
relative, with an absolute floor of 1e-12 times the largest entry of its kind (the value, the
gradient, or the Hessian) or 1e-12 when that is below 1, for entries that cancel to nearly zero
(v1/v1 has a Hessian of 2/v1^2 - 2/v1^2): two correct programs that add the same terms in
another order differ there by rounding alone.

The formulas stay inside every function's domain the way cli_torch_ops.py does with its
positive values: the argument of log, sqrt, log1p and a power's base, a divisor, and tan's
argument are checked at the values as the formula is built, and one that is too close to the
edge is replaced by 0.5 + square(it).  gelu_tanh's argument is kept above -4 the same way: in
its far tail 0.5 x (1 + tanh(u)) cancels (1 + tanh(u) is below 1e-7 at x = -5), so both
programs lose digits and differ by up to 3e-7 relative in the Hessian, from each other and from
the exact value (gelu_tanh(recip((add(1.5, v2) * tan(v1)))) at v1=-0.9417819188305718,
v2=-1.3752326007051079, whose argument is -5.85): a matter of conditioning, not of derivatives.  A negative base is kept only under a literal exponent 2
or 3 (torch.pow and backprop agree there).  A formula whose reference is not finite or holds a
number beyond 1e6 is drawn again: such numbers measure overflow and rounding, not derivatives.

Conventions that the two share, and that this test therefore exercises rather than excludes:
at a kink (relu and abs at 0, max and min at a tie, which formulas such as relu(v0 - v0) or
max(v1, v1) reach) the first derivative is PyTorch's and the second is 0.

A function the CLI lists that torch_twins.py does not know fails the test, so a new op gets its
PyTorch twin there.  Prints the number of formulas, how often each function was used and the
worst relative error of the value, the gradient and the Hessian.
Exit status: 0 all match, 1 a mismatch, 77 (skip) without torch.
"""
import json
import math
import random
import subprocess
import sys

try:
    import torch
    from torch.autograd.functional import hessian
    from torch_twins import UNARY, BINARY
except ImportError as e:
    print(f"SKIP: {e}: install Debian's python3-torch")
    sys.exit(77)

OPERATORS = {"+": torch.add, "-": torch.sub, "*": torch.mul, "/": torch.div, "^": torch.pow}

RTOL = 1e-8
FLOOR = 1e-12  # times the largest entry of its kind, or 1
LARGEST = 1e6
NAMES = ["v0", "v1", "v2", "v3"]


class Expr:
    """A formula as the CLI reads it (text), as torch computes it (fn of the variables' tensors),
    its value at the point (to keep arguments inside their domains), and the variables it uses."""

    def __init__(self, text, fn, value, used, literal=None):
        self.text, self.fn, self.value, self.used, self.literal = text, fn, value, used, literal


def value_of(fn, point):
    with torch.no_grad():
        return fn({k: torch.tensor(v, dtype=torch.float64) for k, v in point.items()}).item()


class Generator:
    def __init__(self, rng, functions, point):
        self.rng, self.functions, self.point = rng, functions, point
        self.used = {name: 0 for name in functions}
        self.used.update({op: 0 for op in OPERATORS})
        self.kinks = 0  # relu or abs at 0, max or min at a tie: the conventions are checked too

    def make(self, text, fn, used, literal=None):
        return Expr(text, fn, value_of(fn, self.point), used, literal)

    def leaf(self):
        if self.rng.random() < 0.75:
            name = self.rng.choice(sorted(self.point))
            return self.make(name, lambda t, n=name: t[n], {name})
        c = self.rng.choice([0.5, 2.0, 3.0, 1.5, -0.7, 1.0])
        return self.make(f"({c!r})" if c < 0 else repr(c), lambda t, c=c: torch.tensor(c, dtype=torch.float64),
                         set(), literal=c)

    def safe(self, e, ok):
        """e itself when ok(its value) holds with a margin, else 0.5 + square(e)."""
        if math.isfinite(e.value) and ok(e.value):
            return e
        return self.make(f"(0.5 + square({e.text}))", lambda t, f=e.fn: 0.5 + torch.square(f(t)), e.used)

    def unary(self, name, a):
        if name in ("log", "sqrt"):
            a = self.safe(a, lambda v: v > 0.05)
        elif name == "log1p":
            a = self.safe(a, lambda v: v > -0.95)
        elif name == "recip":
            a = self.safe(a, lambda v: abs(v) > 0.1)
        elif name == "gelu_tanh":
            a = self.safe(a, lambda v: v > -4)
        elif name == "tan":
            a = self.safe(a, lambda v: abs(math.cos(v)) > 0.1)
        self.used[name] += 1
        self.kinks += name in ("relu", "abs") and a.value == 0
        f = UNARY[name]
        return self.make(f"{name}({a.text})", lambda t, f=f, a=a.fn: f(a(t)), a.used)

    def binary(self, op, a, b):
        """op is an operator (+ - * / ^) or a binary function's name."""
        if op in ("/", "div"):
            b = self.safe(b, lambda v: abs(v) > 0.1)
        if op in ("^", "pow"):
            if b.literal in (2.0, 3.0):
                a = self.safe(a, lambda v: abs(v) > 0.05)
            else:
                a = self.safe(a, lambda v: v > 0.05)
        self.used[op] += 1
        self.kinks += op in ("max", "min") and a.value == b.value
        used = a.used | b.used
        if op in OPERATORS:
            f = OPERATORS[op]
            return self.make(f"({a.text} {op} {b.text})", lambda t, f=f, a=a.fn, b=b.fn: f(a(t), b(t)), used)
        f = BINARY[op]
        return self.make(f"{op}({a.text}, {b.text})", lambda t, f=f, a=a.fn, b=b.fn: f(a(t), b(t)), used)

    def expr(self, depth):
        r = self.rng.random()
        if depth == 0 or r < 0.2:
            return self.leaf()
        unary = [n for n in self.functions if n in UNARY]
        binary = [n for n in self.functions if n in BINARY] + list(OPERATORS)
        if r < 0.6:
            return self.unary(self.rng.choice(unary), self.expr(depth - 1))
        return self.binary(self.rng.choice(binary), self.expr(depth - 1), self.expr(depth - 1))


def reference(e, names, point):
    """torch's value, gradient and Hessian at point, variables in the order of names."""
    x = torch.tensor([point[n] for n in names], dtype=torch.float64, requires_grad=True)

    def f(v):
        return e.fn({n: v[i] for i, n in enumerate(names)})

    y = f(x)
    grad = torch.autograd.grad(y, x)[0] if y.requires_grad else torch.zeros(len(names), dtype=torch.float64)
    H = hessian(f, x.detach())
    return y.item(), grad.tolist(), H.tolist()


def finite_and_modest(numbers):
    return all(math.isfinite(v) and abs(v) <= LARGEST for v in numbers)


def rel_errors(got, want):
    """Each |got - want| over its tolerance's scale; a ratio above RTOL is a mismatch."""
    floor = FLOOR * max([abs(w) for w in want] + [1.0]) / RTOL
    return [abs(g - w) / max(abs(w), floor) for g, w in zip(got, want)]


def main():
    bp = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 400
    rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 20261129)
    listed = subprocess.run([bp, "--functions"], capture_output=True, text=True, check=True).stdout.split()
    # the tensor functions take tensors: cli_torch_tensor.py holds them against torch
    functions = [item.split("(")[0] for item in listed
                 if item.split("(")[0] not in {"sum", "mean", "softmax", "log_softmax", "ce"}]
    failures = 0
    for name in functions:
        if name not in UNARY and name not in BINARY:
            print(f"FAIL: backprop knows {name} but this test has no PyTorch twin for it")
            failures += 1
    functions = [n for n in functions if n in UNARY or n in BINARY]
    worst = {"value": (0.0, ""), "gradient": (0.0, ""), "hessian": (0.0, "")}
    tallies = None
    checked = redrawn = kinks = 0
    while checked < count:
        nvars = rng.randint(1, 4)
        point = {n: rng.uniform(-2, 2) for n in NAMES[:nvars]}
        gen = Generator(rng, functions, point)
        e = gen.expr(rng.randint(1, 4))
        names = [n for n in NAMES if n in e.used]  # only the used ones: the CLI refuses the others
        rng.shuffle(names)  # the command line's order is the report's
        if not names:
            redrawn += 1
            continue
        value, grad, H = reference(e, names, point)
        flat = [v for row in H for v in row]
        if not finite_and_modest([value] + grad + flat):
            redrawn += 1
            continue
        if tallies is None:
            tallies = dict.fromkeys(gen.used, 0)
        for k, n in gen.used.items():
            tallies[k] += n
        checked += 1
        kinks += gen.kinks > 0
        args = [bp, "--json", "--hessian", e.text] + [f"{n}={point[n]!r}" for n in names]
        run = subprocess.run(args, capture_output=True, text=True)
        if run.returncode != 0:
            print(f"FAIL: {' '.join(args[2:])}: exit {run.returncode}: {run.stderr.strip()}")
            failures += 1
            continue
        got = json.loads(run.stdout)
        if list(got["gradient"]) != names or list(got["hessian"]) != names or any(
                list(got["hessian"][r]) != names for r in names):
            print(f"FAIL: {e.text}: keys not in the command line's order {names}: {run.stdout.strip()}")
            failures += 1
            continue
        parts = {
            "value": ([got["value"]], [value]),
            "gradient": ([got["gradient"][n] for n in names], grad),
            "hessian": ([got["hessian"][r][c] for r in names for c in names], flat),
        }
        bad = False
        for kind, (g, w) in parts.items():
            if None in g:
                bad = True
                continue
            errs = rel_errors(g, w)
            if max(errs) > worst[kind][0]:
                worst[kind] = (max(errs), e.text)
            bad = bad or max(errs) > RTOL
        if bad:
            print(f"FAIL: {' '.join(args[3:])}\n  backprop {parts}\n  (got, torch) per kind above")
            failures += 1
    for k in sorted(tallies):
        if tallies[k] == 0:
            print(f"FAIL: no formula used {k}")
            failures += 1
    print("uses: " + ", ".join(f"{k} {tallies[k]}" for k in sorted(tallies)))
    for kind, (err, formula) in worst.items():
        print(f"worst relative error of the {kind}: {err:.3g} ({formula})")
    print(f"{kinks} formulas reach a kink")
    print(f"{checked} formulas checked ({redrawn} drawn again for overflow or no variable), {failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
