#!/usr/bin/env bash
# Generates docs/tutorial.md from docs/tutorial.md.in with the CLI's real output.
#   gen_tutorial.sh BACKPROP DOCS_DIR           write docs/tutorial.md and docs/img/*.svg
#   gen_tutorial.sh --check BACKPROP DOCS_DIR   fail if they differ from what would be written
# Directives in the template, each on a line of its own:
#   @run ARGS        a shell block: "$ backprop ARGS" and what it prints
#   @svg NAME ARGS   writes img/NAME.svg from "backprop --svg ARGS" and shows the picture
#   @file PATH       the file (relative to DOCS_DIR) in a C block
#   @lecture PART    a shell block: "$ lecture --part PART --svg img" and what it prints, then
#                    the picture it draws (img/lecture-PART.svg); lecture sits beside BACKPROP
set -euo pipefail
check=0
if [ "${1:-}" = "--check" ]; then check=1; shift; fi
bp=$1 docs=$2
lecture=$(cd "$(dirname "$bp")" && pwd)/lecture
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
mkdir -p "$out/img"

while IFS= read -r line; do
    case "$line" in
    "@run "*)
        args=${line#@run }
        eval "set -- $args"
        printf '```\n$ backprop %s\n' "$args"
        "$bp" "$@" || true
        printf '```\n'
        ;;
    "@svg "*)
        rest=${line#@svg }
        name=${rest%% *} args=${rest#* }
        eval "set -- $args"
        "$bp" --svg "$@" > "$out/img/$name.svg"
        printf '![backprop --svg %s](img/%s.svg)\n' "$args" "$name"
        ;;
    "@lecture "*)
        part=${line#@lecture }
        printf '```\n$ lecture --part %s --svg img\n' "$part"
        (cd "$out" && "$lecture" --part "$part" --svg img) || true
        printf '```\n\n![lecture --part %s](img/lecture-%s.svg)\n' "$part" "$part"
        ;;
    "@file "*)
        printf '```c\n'
        cat "$docs/${line#@file }"
        printf '```\n'
        ;;
    *) printf '%s\n' "$line" ;;
    esac
done < "$docs/tutorial.md.in" > "$out/tutorial.md"

if [ $check = 1 ]; then
    status=0
    for f in tutorial.md img/*.svg; do
        [ -e "$out/$f" ] || continue
        if ! cmp -s "$out/$f" "$docs/$f"; then
            echo "docs/$f is stale: run docs/gen_tutorial.sh build/demos/backprop docs" >&2
            status=1
        fi
    done
    exit $status
fi
cp "$out/tutorial.md" "$docs/tutorial.md"
cp "$out"/img/*.svg "$docs/img/"
