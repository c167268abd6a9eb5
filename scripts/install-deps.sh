#!/bin/sh
# Installs what building and testing fusec needs, when it is missing:
# flex, bison, cmocka (unit tests), a C compiler and Debian's python3-numpy
# (tests that make reference data).  Uses apt-get; needs root when anything is missing.
set -e
missing=""
command -v flex  >/dev/null 2>&1 || missing="$missing flex"
command -v bison >/dev/null 2>&1 || missing="$missing bison"
command -v cc    >/dev/null 2>&1 || missing="$missing gcc"
command -v make  >/dev/null 2>&1 || missing="$missing make"
[ -f /usr/include/cmocka.h ] || missing="$missing libcmocka-dev"
/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1 || missing="$missing python3-numpy"
[ -n "$missing" ] || exit 0
echo "install-deps: installing:$missing"
if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
else
    SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
