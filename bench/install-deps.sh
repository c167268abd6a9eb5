#!/bin/sh
# Installs what `make bench` needs beyond the build's own dependencies, when
# it is missing: OpenBLAS (the peer built from the library users would pick)
# and Debian's PyTorch for /usr/bin/python3 (the eager peer; the suite runs
# without it and says so).  Kept apart from scripts/install-deps.sh because
# `make test` must not pull in a few hundred MB of PyTorch.  Uses apt-get;
# needs root (or sudo) when anything is missing.  A failed install is
# reported and the suite carries on with the peers that are there.
#
# PEERS=llama also builds llama.cpp from source into build/peers/
# (bench/install-llama.sh: needs PyPI, cmake and g++; minutes of compiling),
# the peer of bench/types.sh and bench/model/w6.sh.
case " ${PEERS:-} " in
*" llama "*) sh bench/install-llama.sh || echo "bench/install-deps: llama.cpp was not built; its columns say so" >&2 ;;
esac
missing=""
# cblas.h alone may be netlib's: look for OpenBLAS's own library.
have_openblas=no
for f in /usr/lib/*/libopenblas.so /usr/lib/libopenblas.so /usr/lib/*/openblas*/libopenblas.so; do
    [ -e "$f" ] && have_openblas=yes
done
[ $have_openblas = yes ] || missing="$missing libopenblas-dev"
/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1 || missing="$missing python3-numpy"
/usr/bin/python3 -c 'import torch' >/dev/null 2>&1 || missing="$missing python3-torch"
[ -n "$missing" ] || exit 0
echo "bench/install-deps: installing:$missing"
if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
else
    SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
# shellcheck disable=SC2086
if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends $missing; }; then
    echo "bench/install-deps: apt-get failed; the suite runs with the peers it finds" >&2
fi
exit 0
