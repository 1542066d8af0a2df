#!/usr/bin/env bash
# Installs the build into a temporary root, then builds two programs against it with
# `pkg-config --cflags --libs backprop` alone, and runs them: what a user outside this
# repository does.  One is from docs/; the other (install_real.c) uses ad_real.h, whose inline
# functions need libm in the program's own link line.
#   install_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
if ! out=$(meson install -C "$build" --no-rebuild --quiet --destdir "$root" 2>&1); then
    echo "install_test: meson install failed:" >&2
    echo "$out" >&2
    exit 1
fi
pc=$(find "$root" -name backprop.pc | head -n 1)
[ -n "$pc" ] || { echo "install_test: no backprop.pc installed" >&2; exit 1; }
export PKG_CONFIG_PATH=$(dirname "$pc") PKG_CONFIG_SYSROOT_DIR=$root
for f in ad.h ad_real.h ad_version.h; do
    find "$root" -path "*/include/backprop/$f" | grep -q . || { echo "install_test: $f not installed" >&2; exit 1; }
done
find "$root" -name 'libbackprop.a' | grep -q . || { echo "install_test: no static library" >&2; exit 1; }
find "$root" -name 'backprop.1*' | grep -q . || { echo "install_test: no man page" >&2; exit 1; }
bin=$(find "$root" -type f -name backprop -perm -u+x | head -n 1)
[ -n "$bin" ] || { echo "install_test: CLI not installed" >&2; exit 1; }
libdir=$(dirname "$(find "$root" -name 'libbackprop.so' | head -n 1)")
${CC:-cc} -std=c11 -o "$root/example" "$src/docs/examples/grad_c_function.c" $(pkg-config --cflags --libs backprop)
LD_LIBRARY_PATH=$libdir "$root/example" | grep -q "gradcheck: ok"
${CC:-cc} -std=c11 -o "$root/real" "$src/tests/install_real.c" $(pkg-config --cflags --libs backprop)
LD_LIBRARY_PATH=$libdir "$root/real" 1.3 | grep -q "^ad_real: dy/dx = "
LD_LIBRARY_PATH=$libdir "$bin" --json 'x*y' x=2 y=3 | grep -q '"x": 3'
echo "install_test: ok ($(pkg-config --modversion backprop))"
