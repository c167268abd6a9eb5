#!/bin/sh
# bench/install-llama.sh - llama.cpp as a measured peer (docs/benchmarks.md,
# "llama.cpp"), built from source into build/peers/ (ignored by git):
#
#   1. the llama-cpp-python sdist from PyPI (its vendor/llama.cpp is the
#      source; pip download --no-binary :all: --no-deps, version LLAMA_PY);
#   2. libllama and ggml as static libraries (cmake, GGML_NATIVE=OFF), the
#      CPU backend compiled for AVX-512 F/BW/VL/DQ + VBMI + VNNI + BF16 and
#      AMX-TILE/INT8/BF16, so that one build runs on an AMD Zen 4 (no AMX:
#      ggml asks the kernel for the AMX tile state at run time,
#      arch_prctl(ARCH_REQ_XCOMP_PERM), and uses its AMX buffers only when
#      that succeeds) and on a Sapphire-Rapids-class Xeon (AMX); no OpenMP
#      (ggml's own thread pool), libstdc++ linked statically;
#   3. bench/peer_llama.c linked against them: build/peers/peer_llama, a
#      static binary (else one that needs only the C library);
#   4. the gguf Python package (pure Python + numpy) with pip install
#      --target build/peers/py (for bench/peer_llama_gguf.py).
#
# build/peers/VERSION records what was built.  Opt-in (bench/install-deps.sh
# calls it only with PEERS=llama); never part of make test.  Needs network
# (PyPI), cmake, g++, python3 with pip.  The carried files (peer_llama, py/,
# VERSION) are a few MB: copy build/peers/{peer_llama,py,VERSION} and bench/
# to a host without network or compiler.
#
# Environment: PEERS_DIR (build/peers), LLAMA_PY (0.3.36), JOBS (2),
# PIP (python3 -m pip: any pip that reaches PyPI), CC (cc), CXX (c++).
set -eu
: "${PEERS_DIR:=build/peers}" "${LLAMA_PY:=0.3.36}" "${JOBS:=2}" "${CC:=cc}" "${CXX:=c++}"
PIP=${PIP:-python3 -m pip}
me=install-llama
mkdir -p "$PEERS_DIR"
src=$PEERS_DIR/llama_cpp_python-$LLAMA_PY/vendor/llama.cpp
if [ ! -f "$src/include/llama.h" ]; then
    echo "$me: downloading llama-cpp-python $LLAMA_PY (sdist) from PyPI"
    $PIP download --no-binary :all: --no-deps "llama-cpp-python==$LLAMA_PY" -d "$PEERS_DIR"
    tar xzf "$PEERS_DIR/llama_cpp_python-$LLAMA_PY.tar.gz" -C "$PEERS_DIR"
fi
[ -f "$src/include/llama.h" ] || { echo "$me: error: no $src/include/llama.h" >&2; exit 1; }
b=$PEERS_DIR/llama-build
if [ ! -f "$b/src/libllama.a" ]; then
    echo "$me: building libllama and ggml (static) in $b"
    cmake -S "$src" -B "$b" -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER="$CC" -DCMAKE_CXX_COMPILER="$CXX" \
        -DBUILD_SHARED_LIBS=OFF -DGGML_STATIC=OFF -DGGML_NATIVE=OFF -DGGML_OPENMP=OFF -DGGML_CCACHE=OFF \
        -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
        -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON \
        -DGGML_AMX_TILE=ON -DGGML_AMX_INT8=ON -DGGML_AMX_BF16=ON \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF \
        -DLLAMA_BUILD_COMMON=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF >"$PEERS_DIR/cmake.log" 2>&1 ||
        { tail -20 "$PEERS_DIR/cmake.log" >&2; exit 1; }
    cmake --build "$b" --target llama -j "$JOBS" >"$PEERS_DIR/build.log" 2>&1 ||
        { tail -20 "$PEERS_DIR/build.log" >&2; exit 1; }
fi
libs=$(find "$b" -name 'libllama.a' -o -name 'libggml*.a' | sort -r | tr '\n' ' ')
echo "$me: linking $PEERS_DIR/peer_llama"
# shellcheck disable=SC2086
# Fully static (no glibc version needed where it runs; ggml's dlopen, for
# backends loaded from a folder, is never called: the link warns about it),
# else with only the C library dynamic.
link() {
    $CXX -O2 -I"$src/include" -I"$src/ggml/include" -o "$PEERS_DIR/peer_llama" -x c bench/peer_llama.c -x none \
        -Wl,--start-group $libs -Wl,--end-group "$@" -lpthread -lm -ldl
}
link -static 2>"$PEERS_DIR/link.log" || link -static-libstdc++ -static-libgcc
if [ ! -f "$PEERS_DIR/py/gguf/__init__.py" ]; then
    echo "$me: installing the gguf package into $PEERS_DIR/py"
    # gguf itself is pure Python; its dependencies (numpy, pyyaml, tqdm...)
    # are left out: bench/peer_llama_gguf.py needs numpy only.
    $PIP install --no-deps --target "$PEERS_DIR/py" gguf >"$PEERS_DIR/pip.log" 2>&1 ||
        { tail -5 "$PEERS_DIR/pip.log" >&2; exit 1; }
fi
{
    echo "llama-cpp-python $LLAMA_PY sdist (PyPI), vendor/llama.cpp version $(sed -n 's/.*LLAMA_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\).*/\2/p' "$src/CMakeLists.txt" | tr '\n' . | sed 's/\.$//')"
    echo "llama.cpp commit $(git -C "$src" rev-parse HEAD 2>/dev/null || echo unknown) (the sdist's vendored submodule)"
    echo "sdist sha256 $(sha256sum "$PEERS_DIR/llama_cpp_python-$LLAMA_PY.tar.gz" | cut -d' ' -f1)"
    echo "gguf $(sed -n 's/^Version: //p' "$PEERS_DIR"/py/gguf-*.dist-info/METADATA)"
    echo "flags: static, GGML_NATIVE=OFF, AVX512 F/BW/VL/DQ VBMI VNNI BF16, AMX TILE/INT8/BF16 (runtime-checked), no OpenMP, $(if ldd "$PEERS_DIR/peer_llama" >/dev/null 2>&1; then echo "dynamic libc"; else echo "static binary"; fi)"
} >"$PEERS_DIR/VERSION"
cat "$PEERS_DIR/VERSION"
echo "$me: to run the peer on a host without network or compiler, copy $PEERS_DIR/peer_llama, $PEERS_DIR/py and $PEERS_DIR/VERSION ($(du -sch "$PEERS_DIR/peer_llama" "$PEERS_DIR/py" "$PEERS_DIR/VERSION" | tail -1 | cut -f1)) into the same place there"
