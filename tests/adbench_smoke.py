#!/usr/bin/env python3
"""adbench's smoke test: both objectives on small generated inputs, once each, every engine
(adbench itself exits 2 when an engine's objective differs from the plain C one, or its
derivative from the tape's, by more than 1e-9), its output files, and bad input: a missing,
truncated or malformed file, an unknown engine or option, an unwritable output, each a message
on stderr and exit status 1, never a crash or a half-written file.

Usage: adbench_smoke.py ADBENCH
"""
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from adbench_reference import write_ba, write_gmm  # noqa: E402  (the generator; no torch needed)

failures = []


def run(args, want_rc, want_err=None, what=""):
    r = subprocess.run([sys.argv[1]] + args, capture_output=True, text=True, timeout=300)
    ok = r.returncode == want_rc and (want_err is None or want_err in r.stderr)
    print(f"{'ok  ' if ok else 'FAIL'} {what or ' '.join(args)}: exit {r.returncode}"
          + (f", stderr: {r.stderr.strip()[:200]}" if r.stderr.strip() else ""))
    if not ok:
        failures.append(what or " ".join(args))
        print(r.stdout[-2000:])
    return r


def main():
    with tempfile.TemporaryDirectory() as tmp:
        gmm = []
        for d, k, n, gamma, m in [(1, 2, 10, 1.0, 0), (3, 4, 30, 1.5, 2), (7, 5, 20, 1.0, 0)]:
            path = os.path.join(tmp, f"gmm_d{d}_K{k}.txt")
            write_gmm(path, d, k, n, d * 10 + k, gamma, m)
            gmm.append(path)
        ba = []
        for n, m, p, zero in [(1, 1, 1, False), (3, 4, 25, False), (2, 5, 12, True)]:
            path = os.path.join(tmp, f"ba_n{n}_m{m}_p{p}{'_r0' if zero else ''}.txt")
            write_ba(path, n, m, p, n + m + p, zero)
            ba.append(path)
        for path in gmm:
            r = run(["gmm", path, "--repeat", "1"], 0, what=f"gmm {os.path.basename(path)}, all engines agree")
            if "bench: gmm_ratio_tape" not in r.stdout:
                failures.append("no gmm_ratio_tape line")
        for path in ba:
            r = run(["ba", path, "--repeat", "2"], 0, what=f"ba {os.path.basename(path)}, all engines agree")
            if "bench: ba_ratio_tensor" not in r.stdout:
                failures.append("no ba_ratio_tensor line")

        out = os.path.join(tmp, "out", "result.txt")
        os.mkdir(os.path.dirname(out))
        run(["gmm", gmm[1], "--engine", "tensor", "--out", out, "--repeat", "1"], 0, what="gmm --out")
        with open(out) as f:
            lines = f.read().split("\n")
        if len(lines) != 1 + 4 * (1 + 3 + 6) + 1 or lines[-1] != "":
            failures.append(f"gmm --out: {len(lines)} lines")
        run(["ba", ba[1], "--engine", "tape", "--out", out, "--repeat", "1"], 0, what="ba --out")
        with open(out) as f:
            text = f.read()
        head = text.split("\n")
        if head[0] != "75 70" or head[1] != "76" or not head[2].startswith("0 15 30 ") or text.endswith("\n") \
                or not text.endswith(" ") or len(head[5].split()) != 31 * 25:
            failures.append("ba --out: not write_J_sparse's layout")
        if os.listdir(os.path.dirname(out)) != ["result.txt"]:
            failures.append(f"temporary files left: {os.listdir(os.path.dirname(out))}")

        # bad input
        trunc = os.path.join(tmp, "trunc.txt")
        with open(gmm[1]) as f:
            text = f.read()
        with open(trunc, "w") as f:
            f.write(text[: len(text) // 2])
        bad = os.path.join(tmp, "bad.txt")
        with open(bad, "w") as f:
            f.write(text.replace("\n", "\nxyz ", 3))
        badba = os.path.join(tmp, "badba.txt")
        with open(badba, "w") as f:
            f.write("3 4 -5\n")
        with open(os.path.join(tmp, "truncba.txt"), "w") as f:
            f.write("3 4 5\n0.1 0.2 0.3 1 2 3 500 1 2 0.1 0.01\n1 2 3\n")
        run(["gmm", os.path.join(tmp, "missing.txt")], 1, "cannot open", "missing file")
        run(["gmm", trunc, "--repeat", "1"], 1, "truncated", "truncated gmm file")
        run(["ba", badba.replace("badba", "truncba"), "--repeat", "1"], 1, "truncated", "truncated ba file")
        run(["gmm", bad, "--repeat", "1"], 1, "bad number 'xyz'", "a word among the numbers")
        run(["ba", badba, "--repeat", "1"], 1, "p (observations) is -5", "negative p")
        run(["gmm", gmm[0], "--engine", "nope"], 1, "unknown engine 'nope'", "unknown engine")
        run(["gmm", gmm[0], "--frobnicate", "1"], 1, "unknown option", "unknown option")
        run(["gmm", gmm[0], "--repeat", "0"], 1, "--repeat", "bad repeat count")
        run(["gmm", gmm[0], "--repeat"], 1, "needs a value", "missing value")
        run(["sgd", gmm[0]], 1, "gmm or ba", "unknown objective")
        run(["gmm", gmm[0], "--repeat", "1", "--out", os.path.join(tmp, "no", "such", "dir.txt")], 1,
            "cannot create", "unwritable output")
        before = os.path.getmtime(out)
        run(["gmm", trunc, "--out", out], 1, "truncated", "failed run keeps the old output")
        if os.path.getmtime(out) != before:
            failures.append("a failed run touched the output")
    print("adbench smoke:", "OK" if not failures else f"FAILED: {failures}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
