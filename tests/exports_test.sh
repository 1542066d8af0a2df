#!/usr/bin/env bash
# The shared library exports exactly what its installed headers declare: every dynamic symbol
# it defines is a function or variable declared in one of them, and every function declared
# there is exported.  Internals that leak become ABI that users can call and that clashes with
# their own names; a declared function that is not exported fails only when a user links.
#   exports_test.sh LIBRARY HEADER...
# Exit 77 (skip) when nm or a C compiler is missing.
set -euo pipefail
lib=$1
shift
command -v nm >/dev/null || { echo "exports_test: no nm, skipping"; exit 77; }
cc=${CC:-cc}
command -v "$cc" >/dev/null || cc=gcc
command -v "$cc" >/dev/null || { echo "exports_test: no C compiler, skipping"; exit 77; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
incs=() ours=()
for h in "$@"; do
    d=$(cd "$(dirname "$h")" && pwd -P)
    incs+=(-I"$d")
    ours+=("$d/$(basename "$h")")
    echo "#include \"$(basename "$h")\"" >>"$tmp/all.c"
done

# The headers' own lines, preprocessed: line markers say which file a line came from, so the
# system headers they include drop out.  Attributes are removed and every {...} block
# (struct, enum and inline-function bodies) is cut, which leaves the top-level declarations
# separated by ';'.  A function is a declaration that is neither a typedef nor static, named
# by the first identifier followed by '('; a variable is an extern one without parentheses.
"$cc" -std=c11 -E -D'__attribute__(x)=' "${incs[@]}" "$tmp/all.c" >"$tmp/all.i"
awk -v ours="${ours[*]}" '
    BEGIN { n = split(ours, f, " "); for (i = 1; i <= n; i++) want[f[i]] = 1 }
    /^# [0-9]+ "/ { name = $3; gsub(/"/, "", name); keep = (name in want); next }
    /^#/ { next }
    keep' "$tmp/all.i" | tr '\n' ' ' >"$tmp/decls.i"
for _ in 1 2 3 4 5 6 7 8; do sed -i 's/{[^{}]*}/;/g' "$tmp/decls.i"; done
tr ';' '\n' <"$tmp/decls.i" | sed 's/^ *//' | grep -Ev '^(typedef|static)\b' >"$tmp/stmts" || true
grep '(' "$tmp/stmts" | sed -E 's/^[^(]*\b([A-Za-z_][A-Za-z0-9_]*) *\(.*/\1/' | grep -E '^[A-Za-z_]' |
    sort -u >"$tmp/functions"
{ grep -E '^extern\b' "$tmp/stmts" || true; } | { grep -v '(' || true; } |
    sed -E 's/.*\b([A-Za-z_][A-Za-z0-9_]*) *(\[[^]]*\])? *$/\1/' | sort -u >"$tmp/variables"
[ -s "$tmp/functions" ] || { echo "exports_test: found no function in the headers" >&2; exit 1; }

# Defined dynamic symbols, less the linker's own (_init, _fini, _edata, ...), the names
# reserved to the implementation (__asan_*, ... in instrumented builds) and symbol versions.
nm -D --defined-only "$lib" | awk 'NF >= 3 { print $3 }' | sed 's/@.*//' |
    grep -Ev '^(_init|_fini|_edata|_end|__bss_start|_[A-Z_].*)$' | sort -u >"$tmp/exported"

status=0
extra=$(sort -u "$tmp/functions" "$tmp/variables" | comm -23 "$tmp/exported" -)
if [ -n "$extra" ]; then
    echo "exports_test: exported but declared in no installed header:" >&2
    echo "$extra" | sed 's/^/  /' >&2
    status=1
fi
missing=$(comm -13 "$tmp/exported" "$tmp/functions")
if [ -n "$missing" ]; then
    echo "exports_test: declared in an installed header but not exported:" >&2
    echo "$missing" | sed 's/^/  /' >&2
    status=1
fi
[ $status -eq 0 ] && echo "exports_test: ok ($(wc -l <"$tmp/exported") symbols, $(wc -l <"$tmp/functions") functions declared)"
exit $status
