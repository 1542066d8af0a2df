#!/usr/bin/env bash
# The C blocks of the docs that quote a source file cannot drift from it.
#   check_examples.sh DOCS_DIR FILE.md...
# A ```c block whose first line is "/* docs/examples/NAME.c */" (or "/* tests/NAME.c */")
# quotes that file: the lines after it, cut into pieces at lines that are just "...", must each
# appear in the file verbatim (indentation included).  Other blocks are not checked.
set -euo pipefail
docs=$1
shift
status=0 checked=0
for md in "$@"; do
    in_block=0 source='' piece='' line_no=0
    # one piece of a quoting block against its file
    check_piece() {
        [ -z "$piece" ] && return
        if [[ "$(cat "$docs/../$source")" != *"$piece"* ]]; then
            printf '%s: block ending near line %d: not in %s:\n%s\n' "$md" "$line_no" "$source" "$piece" >&2
            status=1
        fi
        checked=$((checked + 1))
        piece=''
    }
    while IFS= read -r line; do
        line_no=$((line_no + 1))
        if [ $in_block = 0 ]; then
            [ "$line" = '```c' ] && in_block=1 source='' piece=''
            continue
        fi
        if [ $in_block = 1 ]; then # the block's first line
            in_block=2
            if [[ "$line" =~ ^/\*\ ((docs/examples|tests)/[a-z_]+\.c)\ \*/$ ]]; then source=${BASH_REMATCH[1]}; continue; fi
        fi
        if [ "$line" = '```' ]; then
            [ -n "$source" ] && check_piece
            in_block=0
        elif [ -n "$source" ]; then
            if [ "$line" = '...' ]; then check_piece; else piece+="$line"$'\n'; fi
        fi
    done < "$docs/$md"
done
echo "pieces checked: $checked"
[ $checked -gt 0 ] && exit $status
echo "no block quotes an example" >&2
exit 1
