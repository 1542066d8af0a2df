#!/usr/bin/env python3
"""adbench over ADBench's GMM sizes and the BA files: a table of J/F per engine.

Usage: adbench_sizes.py ADBENCH [SHARED_DIR] [--repeat N] [--d 2,10] [--k 5,10] [--engine E]

Writes GMM files with n = 1000 points for d in {2, 10, 20, 32, 64} and K in {5, 10, 25, 50,
100} (the generator of adbench_reference.py, seeded by size) into a temporary directory, runs
`ADBENCH gmm FILE --repeat N` on each (single-threaded: BACKPROP_THREADS=1), then BA on the
files of SHARED_DIR (ba*.txt) and two generated ones; prints each size's F and every engine's J
and J/F, and the median J/F over the GMM sizes as `bench: gmm_median_ratio_ENGINE R`.
"""
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from adbench_reference import write_ba, write_gmm  # noqa: E402


def bench_lines(text):
    out = {}
    for line in text.splitlines():
        if line.startswith("bench: "):
            name, value = line[7:].rsplit(" ", 1)
            out[name] = float(value)
    return out


def run(adbench, kind, path, repeat, engine):
    args = [adbench, kind, path, "--repeat", str(repeat)] + (["--engine", engine] if engine else [])
    env = dict(os.environ, BACKPROP_THREADS="1")
    r = subprocess.run(args, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        print(f"FAIL: {' '.join(args)}: exit {r.returncode}: {r.stderr.strip()}")
    return r.returncode, bench_lines(r.stdout)


def table(kind, label, b, ratios):
    engines = [k[len(kind) + 7:] for k in b if k.startswith(kind + "_ratio_")]
    cells = [f"F {b[kind + '_F_ms']:.3f} ms"]
    for e in engines:
        cells.append(f"{e} {b[kind + '_J_' + e + '_ms']:.3f} ms ({b[kind + '_ratio_' + e]:.2f})")
        ratios.setdefault(e, []).append(b[kind + "_ratio_" + e])
    print(f"{label:28s} " + ", ".join(cells), flush=True)


def main():
    argv = sys.argv[1:]
    opts = {"--repeat": "3", "--d": "2,10,20,32,64", "--k": "5,10,25,50,100", "--engine": ""}
    pos = []
    i = 0
    while i < len(argv):
        if argv[i] in opts and i + 1 < len(argv):
            opts[argv[i]] = argv[i + 1]
            i += 2
        else:
            pos.append(argv[i])
            i += 1
    if not pos:
        print(__doc__)
        return 1
    adbench, shared = pos[0], pos[1] if len(pos) > 1 else None
    repeat, engine = int(opts["--repeat"]), opts["--engine"] or None
    status = 0
    with tempfile.TemporaryDirectory() as tmp:
        ratios = {}
        print("GMM, n = 1000: F (plain C) and each engine's J (J/F); medians of alternated rounds")
        for d in [int(v) for v in opts["--d"].split(",")]:
            for k in [int(v) for v in opts["--k"].split(",")]:
                path = os.path.join(tmp, f"gmm_d{d}_K{k}.txt")
                write_gmm(path, d, k, 1000, 1000 * d + k)
                rc, b = run(adbench, "gmm", path, repeat, engine)
                status |= rc != 0
                if "gmm_F_ms" in b:
                    table("gmm", f"gmm d={d} K={k}", b, ratios)
                os.remove(path)
        for e, rs in ratios.items():
            print(f"bench: gmm_median_ratio_{e} {statistics.median(rs):.3g}")
        ba_files = []
        if shared and os.path.isdir(shared):
            ba_files += [os.path.join(shared, f) for f in sorted(os.listdir(shared)) if f.startswith("ba")]
        for n, m, p, zero in [(21, 11315, 36455, False), (49, 7776, 31843, True)]:
            path = os.path.join(tmp, f"ba_n{n}_m{m}_p{p}{'_r0' if zero else '_gen'}.txt")
            write_ba(path, n, m, p, n + m + p, zero)
            ba_files.append(path)
        ratios = {}
        print("BA: F (plain C residuals) and each engine's J (J/F)")
        for path in ba_files:
            rc, b = run(adbench, "ba", path, repeat, engine)
            status |= rc != 0
            if "ba_F_ms" in b:
                table("ba", os.path.basename(path), b, ratios)
    return 1 if status else 0


if __name__ == "__main__":
    sys.exit(main())
