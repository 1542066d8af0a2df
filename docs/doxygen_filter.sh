#!/bin/sh
# Doxygen input filter: the public headers use plain C comments (one paragraph above each
# declaration, a trailing comment after each field); this turns them into Doxygen's doc
# comments without changing how the headers read.
sed -e '1s|^/\*$|/** @file|' -e '1s|^/\* \(.*\)|/** @file \1|' \
    -e 's|^\(\s*\)/\* |\1/** |' \
    -e 's|^\(\s*\)/\*$|\1/**|' \
    -e 's|\([;,{]\)\(\s*\)/\* |\1\2/**< |' \
    -e 's|^\(\s*[A-Z_][A-Z0-9_]*\)\(\s*\)/\* |\1\2/**< |' "$1"
