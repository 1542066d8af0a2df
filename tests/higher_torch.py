#!/usr/bin/python3
"""backprop's second order on small MLPs against PyTorch, in float64.

Usage: higher_torch.py HIGHER_TORCH_DRIVER

The driver (tests/higher_torch_driver.c) prints weights, data and its results as JSON.  Here
the same networks are rebuilt from the printed weights as functions of one flat parameter
vector, laid out as nn.Sequential's parameters() (W [out, in] row-major, then b, layer by
layer), and

  hessians:  torch.autograd.functional.hessian of the loss must equal ours to 1e-10
             (|ours - torch| <= 1e-10 max(1, |torch|)), as must H v (ad_hvp_graph) against
             torch's H @ v; our Hessian must be symmetric to 1e-12;
  penalties: 20 steps of training whose loss carries a penalty on the gradient with respect
             to the input (torch.autograd.grad with create_graph=True, then backward through
             it), with torch.optim's SGD, momentum or Adam: each step's objective must equal
             ours to 1e-10 relative, and the trajectory with the penalty's gradient treated
             as a constant (first order only) must differ by more than 1e-6, so that the
             match says something about second order.
Our parameters must have the names, shapes and order of nn.Sequential's.

Prints the largest differences of each case.
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

torch.set_default_dtype(torch.float64)
ACTS = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu, "softplus": F.softplus}
HESSIAN_TOL = 1e-10
SYMMETRY_TOL = 1e-12
TRAJECTORY_TOL = 1e-10


def f64(values):
    """A float64 tensor (JSON prints whole numbers without a point, which torch reads as int)."""
    return torch.tensor(values, dtype=torch.float64)


def shapes(sizes):
    """(shape of W, shape of b) per layer, in parameters() order."""
    out = []
    for i in range(len(sizes) - 1):
        out += [(sizes[i + 1], sizes[i]), (sizes[i + 1],)]
    return out


def unflatten(theta, sizes):
    params, at = [], 0
    for s in shapes(sizes):
        n = s[0] * (s[1] if len(s) == 2 else 1)
        params.append(theta[at:at + n].reshape(s))
        at += n
    return params


def network(params, act, x):
    """The MLP: act after every layer but the last, as nn.Sequential(Linear, act, ..., Linear)."""
    z = x
    layers = len(params) // 2
    for i in range(layers):
        z = F.linear(z, params[2 * i], params[2 * i + 1])
        if i + 1 < layers:
            z = ACTS[act](z)
    return z


def flat_params(case):
    """Our parameters as one vector, after checking that they are laid out as PyTorch's: the
    names, shapes and order of nn.Sequential(Linear, act, Linear, ...).named_parameters()."""
    sizes = case["sizes"]
    layers = []
    for i in range(len(sizes) - 1):
        layers += [torch.nn.Linear(sizes[i], sizes[i + 1])] + ([torch.nn.Tanh()] if i + 2 < len(sizes) else [])
    theirs = [(name, p.numel()) for name, p in torch.nn.Sequential(*layers).named_parameters()]
    ours = [(p["name"], len(p["values"])) for p in case["params"]]
    if ours != theirs:
        raise SystemExit(f"FAIL: {case['name']}: parameters {ours}, PyTorch's {theirs}")
    return f64([v for p in case["params"] for v in p["values"]])


def worst(ours, theirs):
    """The largest |ours - theirs| and the largest of it over max(1, |theirs|)."""
    d = (ours - theirs).abs()
    return d.max().item(), (d / theirs.abs().clamp(min=1)).max().item()


def check_hessian(case):
    sizes, act, kind = case["sizes"], case["act"], case["loss_kind"]
    n = len(case["labels"])
    x = f64(case["x"]).reshape(n, sizes[0])
    y = f64(case["y"]).reshape(n, sizes[-1])
    labels = torch.tensor(case["labels"], dtype=torch.long)

    def loss(theta):
        scores = network(unflatten(theta, sizes), act, x)
        if kind == "mse":
            return F.mse_loss(scores, y)
        if kind == "cross_entropy":
            return F.cross_entropy(scores, labels)
        return F.mse_loss(torch.softmax(scores, dim=1), y)

    theta = flat_params(case)
    P = theta.numel()
    H = torch.autograd.functional.hessian(loss, theta)
    ours = f64(case["hessian"]).reshape(P, P)
    v, hv = f64(case["v"]), f64(case["hv"])
    h_abs, h_rel = worst(ours, H)
    v_abs, v_rel = worst(hv, H @ v)
    asym = (ours - ours.T).abs().max().item()
    loss_rel = abs(case["loss"] - loss(theta).item()) / abs(loss(theta).item())
    ok = h_rel <= HESSIAN_TOL and v_rel <= HESSIAN_TOL and asym <= SYMMETRY_TOL and loss_rel <= 1e-13
    print(f"{'ok' if ok else 'FAIL'}: hessian {case['name']} ({P} parameters, |H| max {H.abs().max().item():.3g}): "
          f"H max abs diff {h_abs:.2e} rel {h_rel:.2e}; Hv max abs diff {v_abs:.2e} rel {v_rel:.2e}; "
          f"|H - H^T| max {asym:.2e}; loss rel diff {loss_rel:.1e}")
    return ok


def check_penalty(case):
    sizes, act = case["sizes"], case["act"]
    n = len(case["y"]) // sizes[-1]
    x = f64(case["x"]).reshape(-1, n, sizes[0])
    y = f64(case["y"]).reshape(n, sizes[-1])
    lam = case["lambda"]

    def trajectory(second_order):
        """The objective of each step; without second_order the penalty's gradient is taken as a
        constant, so the steps see the penalty's value but not its slope."""
        params = [p.clone().requires_grad_() for p in unflatten(flat_params(case), sizes)]
        if case["optimizer"] == "gd":
            opt = torch.optim.SGD(params, lr=case["lr"])
        elif case["optimizer"] == "momentum":
            opt = torch.optim.SGD(params, lr=case["lr"], momentum=case["momentum"])
        else:
            opt = torch.optim.Adam(params, lr=case["lr"])

        def objective():
            if case["penalty"] == "input_grad_squared":
                xs = x[0].clone().requires_grad_()
                loss = F.mse_loss(network(params, act, xs), y)
                (gx,) = torch.autograd.grad(loss, xs, create_graph=second_order, retain_graph=True)
                return loss + lam * (gx ** 2).sum()
            real, fake, mid = x[0], x[1], x[2].clone().requires_grad_()
            wasserstein = network(params, act, fake).mean() - network(params, act, real).mean()
            (gx,) = torch.autograd.grad(network(params, act, mid).sum(), mid, create_graph=second_order, retain_graph=True)
            return wasserstein + lam * ((gx.pow(2).sum(dim=1).sqrt() - 1) ** 2).mean()

        losses = []
        for _ in case["losses"]:
            opt.zero_grad()
            total = objective()
            total.backward()
            opt.step()
            losses.append(total.item())
        return f64(losses)

    theirs = trajectory(True)
    # the penalty's slope must move the trajectory, or this would be a first-order test
    first_order_only = (trajectory(False) - theirs).abs().max().item() / theirs.abs().max().item()
    ours = f64(case["losses"])
    rel = ((ours - theirs).abs() / theirs.abs()).max().item()
    ok = rel <= TRAJECTORY_TOL and first_order_only > 1e-6
    print(f"{'ok' if ok else 'FAIL'}: penalty {case['name']} ({case['penalty']}, {case['optimizer']}): "
          f"{len(theirs)} steps, objective {theirs[0]:.6g} -> {theirs[-1]:.6g}, max rel diff {rel:.2e} "
          f"(without the penalty's second order: {first_order_only:.1e})")
    return ok


def main():
    run = subprocess.run([sys.argv[1]], capture_output=True, text=True)
    if run.returncode != 0:
        print(f"FAIL: {sys.argv[1]} exited with {run.returncode}: {run.stderr}")
        return 1
    data = json.loads(run.stdout)
    results = [check_hessian(c) for c in data["hessians"]] + [check_penalty(c) for c in data["penalties"]]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
