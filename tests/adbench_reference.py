#!/usr/bin/python3
"""adbench against an independent float64 reference: PyTorch autograd on ADBench's definitions.

Usage: adbench_reference.py ADBENCH [SHARED_DIR]
       adbench_reference.py gen-gmm D K N SEED FILE [GAMMA M]
       adbench_reference.py gen-ba N M P SEED FILE [zero-rotation]

The first form writes random GMM files (several d and K, n small enough for torch to be quick)
and BA files (other n, m, p, non-trivial cameras, and one with r = 0 exactly, which takes the
theta^2 == 0 branch) into a temporary directory, adds the ADBench files of SHARED_DIR if it
exists, runs `ADBENCH gmm|ba FILE --engine E --out OUT --repeat 1` for every engine the build
has, and compares:

  GMM: the objective and the gradient with respect to (alphas, means, icf), computed here by
       torch.autograd straight from the definitions (Q_c = diag(exp(q_c)) + L_c, the points'
       logsumexp, the Wishart prior with ADBench's pi = 3.14159265359);
  BA:  the Jacobian file (write_J_sparse): its sizes and CSR structure exactly, and its values
       against torch.autograd's.  On small files the whole dense Jacobian of every residual
       with respect to every camera, point and weight is taken (torch.autograd.functional.
       jacobian), so the column layout is checked too; on large ones, each observation's
       inputs are leaves of their own and one reverse sweep per residual coordinate gives
       every 2 x 15 block.

A value passes when |x - y| / max(1, |x| + |y|) <= 1e-9 (ADBench's measure, docs/
JacobianCheck.md, which allows 1e-8).  Prints the largest error per engine and file.
The gen-* forms write one file (no torch needed).
Exit status: 0 all match, 1 a mismatch or a failed run, 77 (skip) without torch.
"""
import math
import os
import random
import subprocess
import sys
import tempfile

TOL = 1e-9
ENGINES = ["tape", "graph", "replay", "program", "tensor", "adolc"]
ADB_PI = 3.14159265359


# ---- the generator ----

def write_gmm(path, d, k, n, seed, gamma=1.0, m=0):
    rng = random.Random(seed)
    icf_sz = d * (d + 1) // 2
    with open(path, "w") as f:
        f.write(f"{d} {k} {n}\n")
        for _ in range(k):
            f.write(f"{rng.gauss(0, 1)!r}\n")
        for _ in range(k):
            f.write(" ".join(repr(rng.gauss(0, 1)) for _ in range(d)) + "\n")
        for _ in range(k):
            f.write(" ".join(repr(rng.gauss(0, 0.5)) for _ in range(icf_sz)) + "\n")
        for _ in range(n):
            f.write(" ".join(repr(rng.gauss(0, 1.5)) for _ in range(d)) + "\n")
        f.write(f"{gamma!r} {m}\n")


def rotate(r, x):
    """Rodrigues' rotation of x by the angle-axis r (the README's two branches)."""
    th2 = r[0] * r[0] + r[1] * r[1] + r[2] * r[2]
    if th2 == 0:
        c = [r[1] * x[2] - r[2] * x[1], r[2] * x[0] - r[0] * x[2], r[0] * x[1] - r[1] * x[0]]
        return [x[j] + c[j] for j in range(3)]
    th = math.sqrt(th2)
    u = [v / th for v in r]
    c = [u[1] * x[2] - u[2] * x[1], u[2] * x[0] - u[0] * x[2], u[0] * x[1] - u[1] * x[0]]
    dot = sum(u[j] * x[j] for j in range(3))
    return [x[j] * math.cos(th) + c[j] * math.sin(th) + u[j] * dot * (1 - math.cos(th)) for j in range(3)]


def write_ba(path, n, m, p, seed, zero_rotation=False):
    rng = random.Random(seed)
    while True:
        r = [0.0, 0.0, 0.0] if zero_rotation else [rng.uniform(-1, 1) for _ in range(3)]
        C = [rng.uniform(-2, 2) for _ in range(3)]
        cam = r + C + [rng.uniform(200, 900), rng.uniform(-10, 10), rng.uniform(-10, 10),
                       rng.uniform(-0.2, 0.2), rng.uniform(-0.05, 0.05)]
        X = [rng.uniform(-3, 3) for _ in range(3)]
        xc = rotate(r, [X[j] - C[j] for j in range(3)])
        if abs(xc[2]) > 1 and abs(xc[0] / xc[2]) < 1 and abs(xc[1] / xc[2]) < 1:
            break
    w = rng.uniform(0.2, 2)
    feat = [rng.uniform(-500, 500), rng.uniform(-500, 500)]
    with open(path, "w") as f:
        f.write(f"{n} {m} {p}\n")
        f.write(" ".join(repr(v) for v in cam) + "\n")
        f.write(" ".join(repr(v) for v in X) + "\n")
        f.write(f"{w!r}\n")
        f.write(" ".join(repr(v) for v in feat) + "\n")


# ---- the readers (ADBench's: a token stream; BA's one camera, point, weight, feature copied) ----

def tokens(path):
    with open(path) as f:
        return f.read().split()


def read_gmm(path):
    t = tokens(path)
    d, k, n = int(t[0]), int(t[1]), int(t[2])
    pos = 3

    def take(count):
        nonlocal pos
        v = [float(s) for s in t[pos:pos + count]]
        pos += count
        return v
    icf_sz = d * (d + 1) // 2
    alphas, means, icf, x = take(k), take(k * d), take(k * icf_sz), take(n * d)
    gamma, m = float(t[pos]), int(float(t[pos + 1]))
    return d, k, n, alphas, means, icf, x, gamma, m


def read_ba(path):
    t = tokens(path)
    n, m, p = int(t[0]), int(t[1]), int(t[2])
    v = [float(s) for s in t[3:20]]
    return n, m, p, v[0:11], v[11:14], v[14], v[15:17]


# ---- the references ----

def gmm_reference(torch, path):
    d, k, n, alphas, means, icf, x, gamma, m = read_gmm(path)
    dt = torch.float64
    a = torch.tensor(alphas, dtype=dt, requires_grad=True)
    mu = torch.tensor(means, dtype=dt).reshape(k, d).requires_grad_()
    ic = torch.tensor(icf, dtype=dt).reshape(k, d * (d + 1) // 2).requires_grad_()
    X = torch.tensor(x, dtype=dt).reshape(n, d)
    q, Lv = ic[:, :d], ic[:, d:]
    rows = [j for i in range(d) for j in range(i + 1, d)]  # column by column: (i+1, i), ..., (d-1, i)
    cols = [i for i in range(d) for j in range(i + 1, d)]
    L = torch.zeros(k, d, d, dtype=dt)
    if rows:
        L = L.index_put((torch.arange(k)[:, None], torch.tensor(rows)[None, :], torch.tensor(cols)[None, :]), Lv)
    Q = torch.diag_embed(torch.exp(q)) + L                       # [k, d, d]
    xc = X[None, :, :] - mu[:, None, :]                          # [k, n, d]
    Qxc = torch.einsum("kij,knj->kni", Q, xc)
    main = a[:, None] + q.sum(1)[:, None] - 0.5 * (Qxc ** 2).sum(2)
    N = d + m + 1
    lgd = 0.25 * d * (d - 1) * math.log(ADB_PI) + sum(math.lgamma(0.5 * N + 0.5 * (1 - j)) for j in range(1, d + 1))
    C = N * d * (math.log(gamma) - 0.5 * math.log(2)) - lgd
    prior = (0.5 * gamma ** 2 * ((torch.exp(q) ** 2).sum(1) + (Lv ** 2).sum(1)) - m * q.sum(1)).sum()
    f = (-(n * d / 2) * math.log(2 * ADB_PI) + torch.logsumexp(main, 0).sum() - n * torch.logsumexp(a, 0)
         + prior - k * C)
    f.backward()
    return [f.item()] + torch.cat([a.grad, mu.grad.flatten(), ic.grad.flatten()]).tolist()


def ba_residuals(torch, cam, X, w, feat):
    """Residuals [p, 2] of observations whose camera [p, 11], point [p, 3], weight [p] and
    feature [p, 2] are given row by row, each branch on its own rows."""
    p = cam.shape[0]
    out = torch.zeros(p, 2, dtype=torch.float64)
    r, Xo = cam[:, 0:3], X - cam[:, 3:6]
    zero = ((cam[:, 0:3].detach() ** 2).sum(1) == 0)
    for branch in (False, True):
        idx = torch.nonzero(zero == branch).flatten()
        if len(idx) == 0:
            continue
        rr, xo = r[idx], Xo[idx]
        if branch:
            xcam = xo + torch.cross(rr, xo, dim=1)
        else:
            th = torch.sqrt((rr ** 2).sum(1, keepdim=True))
            u = rr / th
            xcam = (xo * torch.cos(th) + torch.cross(u, xo, dim=1) * torch.sin(th)
                    + u * (u * xo).sum(1, keepdim=True) * (1 - torch.cos(th)))
        pr = xcam[:, 0:2] / xcam[:, 2:3]
        s = (pr ** 2).sum(1, keepdim=True)
        c = cam[idx]
        pr = pr * (1 + c[:, 9:10] * s + c[:, 10:11] * s * s)
        proj = c[:, 6:7] * pr + c[:, 7:9]
        out = out.index_put((idx,), w[idx][:, None] * (proj - feat[idx]))
    return out


def ba_reference(torch, path):
    """The CSR structure and values ADBench's write_J_sparse would write, and, for small files,
    the dense Jacobian checked against that structure."""
    n, m, p, cam1, X1, w1, feat1 = read_ba(path)
    dt = torch.float64
    obs_c = torch.arange(p) % n
    obs_p = torch.arange(p) % m
    cams = torch.tensor(cam1, dtype=dt).repeat(n, 1)
    Xs = torch.tensor(X1, dtype=dt).repeat(m, 1)
    ws = torch.full((p,), w1, dtype=dt)
    feats = torch.tensor(feat1, dtype=dt).repeat(p, 1)
    nrows, ncols = 3 * p, 11 * n + 3 * m + p
    rows = [15 * r for r in range(2 * p + 1)] + [30 * p + i for i in range(1, p + 1)]
    cols, vals = [], []
    # each observation's 15 inputs as leaves of their own: a residual depends on its own row only
    Z = torch.cat([cams[obs_c], Xs[obs_p], ws[:, None]], 1).requires_grad_()
    res = ba_residuals(torch, Z[:, 0:11], Z[:, 11:14], Z[:, 14], feats)
    blocks = []
    for r in range(2):
        (g,) = torch.autograd.grad(res[:, r].sum(), Z, retain_graph=True)
        blocks.append(g)
    for i in range(p):
        c0, p0, w0 = 11 * int(obs_c[i]), 11 * n + 3 * int(obs_p[i]), 11 * n + 3 * m + i
        for r in range(2):
            cols += list(range(c0, c0 + 11)) + list(range(p0, p0 + 3)) + [w0]
            vals += blocks[r][i].tolist()
    for i in range(p):
        cols.append(11 * n + 3 * m + i)
        vals.append(-2 * w1)
    dense_err = None
    if nrows * ncols <= 4_000_000:
        def all_residuals(c, x, w):
            rr = ba_residuals(torch, c.reshape(n, 11)[obs_c], x.reshape(m, 3)[obs_p], w, feats)
            return torch.cat([rr.flatten(), 1 - w * w])
        J = torch.autograd.functional.jacobian(all_residuals, (cams.flatten(), Xs.flatten(), ws))
        J = torch.cat(J, 1)
        dense = torch.zeros(nrows, ncols, dtype=dt)
        for r in range(nrows):
            for e in range(rows[r], rows[r + 1]):
                dense[r, cols[e]] += vals[e]
        dense_err = rel_err(dense.flatten().tolist(), J.flatten().tolist())
    return (nrows, ncols, rows, cols, vals), dense_err


def rel_err(xs, ys):
    m = 0.0
    for x, y in zip(xs, ys):
        e = abs(x - y) / max(1.0, abs(x) + abs(y))
        if not e <= m:
            m = e
    return m


def read_jacobian(path):
    t = tokens(path)
    nrows, ncols, nr = int(t[0]), int(t[1]), int(t[2])
    rows = [int(s) for s in t[3:3 + nr]]
    nc = int(t[3 + nr])
    cols = [int(s) for s in t[4 + nr:4 + nr + nc]]
    vals = [float(s) for s in t[4 + nr + nc:]]
    return nrows, ncols, rows, cols, vals


# ---- the comparison ----

def run(adbench, kind, path, engine, out):
    r = subprocess.run([adbench, kind, path, "--engine", engine, "--out", out, "--repeat", "1"],
                       capture_output=True, text=True)
    if r.returncode != 0 and "not in this build" in r.stderr:
        return None
    if r.returncode != 0:
        raise RuntimeError(f"{adbench} {kind} {path} --engine {engine} exited with {r.returncode}: {r.stderr}")
    return out


def check_file(torch, adbench, kind, path, tmp):
    failures = 0
    if kind == "gmm":
        want = gmm_reference(torch, path)
        structure = None
    else:
        (nrows, ncols, rows, cols, vals), dense_err = ba_reference(torch, path)
        if dense_err is not None:
            print(f"  {os.path.basename(path)}: the CSR blocks against torch's dense Jacobian: {dense_err:.2e}")
            if not dense_err <= TOL:
                failures += 1
    for e in ENGINES:
        try:
            out = run(adbench, kind, path, e, os.path.join(tmp, "out.txt"))
        except RuntimeError as err:
            print(f"FAIL: {err}")
            failures += 1
            continue
        if out is None:
            continue
        if kind == "gmm":
            with open(out) as f:
                got = [float(s) for s in f.read().split()]
            if len(got) != len(want):
                print(f"FAIL: {e} {path}: {len(got)} numbers, expected {len(want)}")
                failures += 1
                continue
            err = rel_err(got, want)
        else:
            gn, gc, gr, gcols, gvals = read_jacobian(out)
            structure = (gn, gc, gr, gcols) == (nrows, ncols, rows, cols) and len(gvals) == len(vals)
            if not structure:
                print(f"FAIL: {e} {path}: the Jacobian's sizes or CSR structure differ from write_J_sparse's")
                failures += 1
                continue
            err = rel_err(gvals, vals)
        ok = err <= TOL
        print(f"  {e:7s} {kind} {os.path.basename(path)}: max error {err:.2e}{'' if ok else '  FAIL'}")
        print(f"bench: reference_{kind}_{e}_{os.path.basename(path).rsplit('.', 1)[0]} {err:.3g}")
        failures += not ok
    return failures


def main():
    if len(sys.argv) >= 7 and sys.argv[1] == "gen-gmm":
        d, k, n, seed = (int(v) for v in sys.argv[2:6])
        extra = sys.argv[7:9]
        write_gmm(sys.argv[6], d, k, n, seed, float(extra[0]) if extra else 1.0, int(extra[1]) if len(extra) > 1 else 0)
        return 0
    if len(sys.argv) >= 7 and sys.argv[1] == "gen-ba":
        n, m, p, seed = (int(v) for v in sys.argv[2:6])
        write_ba(sys.argv[6], n, m, p, seed, len(sys.argv) > 7 and sys.argv[7] == "zero-rotation")
        return 0
    if len(sys.argv) < 2:
        print(__doc__)
        return 1
    try:
        import torch
    except ImportError as e:
        print(f"SKIP: {e}: install Debian's python3-torch and run with /usr/bin/python3")
        return 77
    torch.set_default_dtype(torch.float64)
    adbench = sys.argv[1]
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i, (d, k, n, gamma, m) in enumerate([(1, 3, 40, 1.0, 0), (2, 5, 60, 1.0, 0), (3, 4, 50, 1.7, 2),
                                                  (5, 7, 80, 0.8, 1), (10, 3, 30, 1.0, 0), (16, 6, 40, 1.3, 3)]):
            path = os.path.join(tmp, f"gmm_d{d}_K{k}_n{n}.txt")
            write_gmm(path, d, k, n, 100 + i, gamma, m)
            files.append(("gmm", path))
        for i, (n, m, p, zero) in enumerate([(1, 1, 1, False), (3, 5, 17, False), (4, 7, 30, True),
                                             (7, 11, 40, False), (2, 3, 9, True), (10, 50, 600, False)]):
            path = os.path.join(tmp, f"ba_n{n}_m{m}_p{p}{'_r0' if zero else ''}.txt")
            write_ba(path, n, m, p, 200 + i, zero)
            files.append(("ba", path))
        shared = sys.argv[2] if len(sys.argv) > 2 else None
        if shared and os.path.isdir(shared):
            for name in sorted(os.listdir(shared)):
                if name.endswith(".txt") and name.split("_")[0] in ("gmm", "ba1", "ba"):
                    files.append(("gmm" if name.startswith("gmm") else "ba", os.path.join(shared, name)))
        for kind, path in files:
            failures += check_file(torch, adbench, kind, path, tmp)
    print("adbench against torch:", "OK" if not failures else f"{failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
