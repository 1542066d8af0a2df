#!/usr/bin/env bash
# Data-parallel training over MPI is bitwise the single-process run it defines (issue 19):
#
#   mpi_bitwise.sh FASHION_MNIST FASHION_CNN MPIRUN SANITIZE
#
# For the MLP (two short epochs with validation, dropout on, a ragged last minibatch) and the
# CNN (one short epoch whose last minibatch has fewer rows than ranks): `mpirun -np 2 DEMO
# --mpi` and `DEMO --shards 2` print the same losses (every step's, every epoch's, the
# validation's and the test accuracy, to 17 digits) and save byte-identical weights;
# `--shards 1` is the plain run; and the plain run differs from `--shards 2`, so the
# comparison can fail.  Exit 77 (skip) without the dataset.  SANITIZE is meson's b_sanitize:
# under AddressSanitizer the MPI runs go without leak detection, because Open MPI's own
# allocations at MPI_Init are never freed (the --shards runs, which execute the same code of
# ours minus MPI_Allgather, keep it).
set -euo pipefail
mnist=$1 cnn=$2 mpirun=$3 sanitize=${4:-none}
data=/usr/share/datasets/fashion-mnist
if [ ! -d "$data" ]; then
    echo "skip: no Fashion-MNIST in $data (apt-get install dataset-fashion-mnist)"
    exit 77
fi
dir=$(mktemp -d "${TMPDIR:-/tmp}/mpi_bitwise.XXXXXX")
trap 'rm -rf "$dir"' EXIT
cd "$dir"

launch=("$mpirun" -np 2 --oversubscribe)
[ "$(id -u)" = 0 ] && launch+=(--allow-run-as-root)
mpi_env=()
case $sanitize in *address*) mpi_env=(env "ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0") ;; esac

fail() { echo "FAIL: $*"; exit 1; }

# The --json line without its timings: what must match bit for bit (%.17g).
numbers() { grep '^{"test_accuracy"' "$1" | sed -E 's/"[a-z_]*seconds": [0-9.]+, //g'; }

# run NAME DEMO ARGS...: one training run, its stdout in NAME.out and weights in NAME.st.
run() {
    local name=$1
    shift
    "$@" --save "$name.st" >"$name.out" 2>"$name.err" || { cat "$name.err"; fail "$name: exit status $?"; }
    [ -n "$(numbers "$name.out")" ] || fail "$name printed no JSON line"
}

same() { # same A B WHAT
    [ "$(numbers "$1.out")" = "$(numbers "$2.out")" ] || { diff <(numbers "$1.out") <(numbers "$2.out") | head -5; fail "$3: the losses differ"; }
    cmp "$1.st" "$2.st" || fail "$3: the saved weights differ"
    echo "ok: $3"
}

check() { # check LABEL DEMO ARGS...
    local label=$1 demo=$2
    shift 2
    # one thread everywhere (--mpi's default), so the comparison is of the sharding alone
    run "$label-plain" "$demo" "$@" --threads 1
    run "$label-shards1" "$demo" "$@" --threads 1 --shards 1
    run "$label-shards2" "$demo" "$@" --threads 1 --shards 2
    run "$label-mpi2" "${mpi_env[@]}" "${launch[@]}" "$demo" "$@" --mpi
    same "$label-mpi2" "$label-shards2" "$label: mpirun -np 2 --mpi = --shards 2"
    same "$label-shards1" "$label-plain" "$label: --shards 1 = the plain run"
    if cmp -s "$label-plain.st" "$label-shards2.st"; then fail "$label: --shards 2 saved the plain run's weights"; fi
    echo "ok: $label: the plain run differs from --shards 2"
    [ "$(grep -c '^training took' "$label-mpi2.out")" = 1 ] || fail "$label: expected one report (rank 0's) from mpirun"
    grep -q '1 thread per rank, 2 MPI ranks' "$label-mpi2.out" || fail "$label: --mpi should default to 1 thread per rank"
}

# 2,700 training images in minibatches of 64: 43 steps per epoch, the last of 12 rows.
check mlp "$mnist" --limit 3000 --epochs 2 --test-limit 500 --log-steps 100 --svg '' --json
# 353 images, no validation, in minibatches of 32: 11 steps and one of a single row, where
# shard 0 is empty (weight 0) and shard 1 has the row.
check cnn "$cnn" --limit 353 --no-validation --epochs 1 --batch 32 --test-limit 100 --log-steps 20 --svg '' --json

# one way or the other, not both
if out=$("$mnist" --mpi --shards 2 2>&1); then fail "--mpi --shards 2 was accepted"; fi
case $out in *"give one of them"*) echo "ok: --mpi with --shards is refused" ;; *) fail "--mpi --shards 2: $out" ;; esac
# a full minibatch needs a row for every shard and every rank
if out=$("$mnist" --shards 65 2>&1); then fail "--shards 65 with --batch 64 was accepted"; fi
case $out in *"a full minibatch needs a row for every shard"*) echo "ok: --shards > --batch is refused" ;; *) fail "--shards 65: $out" ;; esac
status=0
out=$("${mpi_env[@]}" "${launch[@]}" "$mnist" --mpi --batch 1 2>&1) || status=$?
[ "$status" = 2 ] || fail "mpirun -np 2 --mpi --batch 1: exit status $status: $out"
[ "$(grep -c 'a full minibatch needs a row for every rank' <<<"$out")" = 1 ] || fail "--batch 1 on 2 ranks: $out"
echo "ok: more ranks than --batch is refused, by rank 0 alone"
