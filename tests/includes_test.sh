#!/usr/bin/env bash
# Module lines: nn/, optim/ and demos/ include only installed headers and their own folder's
# headers.  The build puts ad/, nn/ and optim/ on every include path, so the compiler would
# not notice a private header (ad/internal.h, ad/kernels/kernels.h, ...) used across a line.
#   includes_test.sh SOURCE_DIR INSTALLED_HEADER...
set -euo pipefail
src=$1
shift
public=" "
for h in "$@"; do public+="$(basename "$h") "; done
status=0
for dir in nn optim demos; do
    for f in "$src/$dir"/*.[ch]; do
        for inc in $(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f"); do
            case "$public" in *" $inc "*) continue ;; esac
            [[ "$inc" != */* && -f "$src/$dir/$inc" ]] && continue
            echo "includes_test: $dir/$(basename "$f") includes \"$inc\", private to another module" >&2
            status=1
        done
    done
done
[ $status -eq 0 ] && echo "includes_test: ok"
exit $status
