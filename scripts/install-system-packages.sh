#!/bin/sh
# System packages atomflux uses when they are there (installed only when missing,
# and only when we are root with apt-get; otherwise the tests that need them skip
# and say why):
#   g++     compiles the `pair_style atomflux` LAMMPS plugin on first use
#   lammps  Debian's LAMMPS, which has the PYTHON package for `pair_style python`
missing=""
command -v g++ >/dev/null 2>&1 || missing="$missing g++"
command -v lmp >/dev/null 2>&1 || missing="$missing lammps"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing system packages:$missing"
    (apt-get update -qq >/dev/null 2>&1 || true)
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null 2>&1 \
        || echo "warning: apt-get could not install$missing; the tests that need them will skip"
else
    echo "note: not installing$missing (needs root and apt-get); the tests that need them will skip"
fi
exit 0
