#!/bin/sh
# bench/tp.sh - tensor parallelism over MPI (docs/distributed.md; issue 13's W8).
# Not part of make test (timings).  Quick by default; on the 16-core host:
#
#   THREADS=16 sh bench/tp.sh            # TPS "1 2 4", ranks x threads = 16
#
#  1. bytes all-reduced per token and per prefill (from the shapes: one
#     D-float all-reduce per half-block, 2 per layer, plus D for a split
#     embedding), for Llama-3.2-1B, Llama-3-8B and Llama-3-70B;
#  2. the all-reduce's latency and bandwidth over loopback, shared memory
#     (--mca btl self,vader) and TCP (self,tcp), 2 ranks (and 4 when
#     THREADS >= 4): bench/tp_allreduce.c through libfusec_comm;
#  3. decode (T = 1 after CTX cached tokens) of one Llama-3.2-1B layer
#     (bench/blocks/llama_1b.fdl, random weights) at TP = each of TPS, each
#     rank on THREADS / TP threads (mpirun --bind-to none), median of REPS;
#  4. a model, from the measured loopback latency and assumed network
#     figures (LAT10, LAT100: one-way MPI latency at 10 and 100 Gb/s;
#     MEM_BW: each machine's memory bandwidth in GB/s), of decode tokens/s
#     for Llama-3-8B and 70B (bf16 weights) on 1, 2, 4, 8 machines, and
#     where TP starts to pay.
#
# Environment: THREADS (2), TPS (1 2, or 1 2 4 with THREADS >= 4), CTX (128),
# REPS (10), MEM_BW (60), LAT10 (30e-6), LAT100 (8e-6), BUILD (build).
set -u
BUILD=${BUILD:-build}
THREADS=${THREADS:-2}
if [ "$THREADS" -ge 4 ]; then TPS=${TPS:-1 2 4}; else TPS=${TPS:-1 2}; fi
CTX=${CTX:-128}
REPS=${REPS:-10}
MEM_BW=${MEM_BW:-60}
LAT10=${LAT10:-30e-6}
LAT100=${LAT100:-8e-6}
FUSEC=$BUILD/fusec
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fusec-tp.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
command -v mpicc >/dev/null && command -v mpirun >/dev/null ||
    { echo "tp.sh: needs mpicc and mpirun (apt-get install openmpi-bin libopenmpi-dev)" >&2; exit 1; }
make -s all comm >/dev/null || exit 1
MPIRUN="mpirun --oversubscribe --bind-to none"
[ "$(id -u)" -eq 0 ] && MPIRUN="$MPIRUN --allow-run-as-root"
LIBS="$BUILD/libfusec_comm.a $BUILD/libfusec_rt.a -lm -lpthread"

echo "# 1. bytes all-reduced (f32 activations): 2 x D x 4 per layer and token, + D x 4 for the embedding"
echo "# model layers D per_token_KiB prefill512_MiB"
for m in "llama-3.2-1b 16 2048" "llama-3-8b 32 4096" "llama-3-70b 80 8192"; do
    set -- $m
    awk -v n="$1" -v L="$2" -v D="$3" 'BEGIN { b = (2 * L + 1) * D * 4; printf "%s %d %d %.1f %.1f\n", n, L, D, b / 1024, 512 * b / 1048576 }'
done

echo "# 2. all-reduce over loopback (libfusec_comm, MPI_Iallreduce in place)"
echo "# btl ranks floats bytes median_us busbw_GB/s"
mpicc -std=c99 -O2 -Iruntime -Iruntime/mpi bench/tp_allreduce.c $LIBS -o "$tmp/ar" || exit 1
NPS=2
[ "$THREADS" -ge 4 ] && NPS="2 4"
for btl in vader tcp; do
    for np in $NPS; do
        $MPIRUN -np "$np" --mca btl "self,$btl" "$tmp/ar" 100 1048576 2>/dev/null | sed "s/^/$btl $np /" |
            tee -a "$tmp/ar.txt"
    done
done
lat_shm=$(awk '$1 == "vader" && $2 == 2 && $4 == 2048 { print $5 * 1e-6 }' "$tmp/ar.txt")
lat_tcp=$(awk '$1 == "tcp" && $2 == 2 && $4 == 2048 { print $5 * 1e-6 }' "$tmp/ar.txt")

echo "# 3. decode of one llama_1b layer (D 2048, 32/8 heads, I 8192), T=1 after $CTX, $THREADS threads in all"
"$FUSEC" check bench/blocks/llama_1b.fdl --random --dim T=1 --target native --keep "$tmp/w" \
    >"$tmp/check.log" 2>&1 || { tail -5 "$tmp/check.log"; exit 1; }
W=$tmp/w/in.safetensors
echo "# tp threads_per_rank median_ms vs_tp1"
for tp in $TPS; do
    th=$((THREADS / tp))
    [ "$th" -ge 1 ] || th=1
    if [ "$tp" -eq 1 ]; then
        "$FUSEC" --target=native bench/blocks/llama_1b.fdl -o "$tmp/one.c" &&
            cc -std=c99 -O2 -march=native -Iruntime -DFUSEC_BLOCK_DESC=llama_1b_desc "$tmp/one.c" bench/tp_main.c \
                "$BUILD/libfusec_rt.a" -lm -lpthread -o "$tmp/one" || exit 1
        ms=$("$tmp/one" "$W" "$th" "$CTX" "$REPS") || exit 1
    else
        cmd="$MPIRUN" r=0
        while [ $r -lt "$tp" ]; do
            "$FUSEC" --target=native --tp="$tp" --tp-rank=$r bench/blocks/llama_1b.fdl -o "$tmp/r$r.c" &&
                mpicc -std=c99 -O2 -march=native -Iruntime -Iruntime/mpi -DFUSEC_MPI -DFUSEC_BLOCK_DESC=llama_1b_desc \
                    "$tmp/r$r.c" bench/tp_main.c $LIBS -o "$tmp/r$r" || exit 1
            [ $r -gt 0 ] && cmd="$cmd :"
            cmd="$cmd -np 1 $tmp/r$r $W $th $CTX $REPS"
            r=$((r + 1))
        done
        ms=$($cmd 2>"$tmp/mpi.log") || { cat "$tmp/mpi.log"; exit 1; }
    fi
    [ "$tp" -eq 1 ] && ms1=$ms
    echo "$tp $th $ms $(awk -v a="$ms1" -v b="$ms" 'BEGIN { printf "%.2f", b / a }')"
done

echo "# 4. model: decode tokens/s, bf16 weights, memory $MEM_BW GB/s per machine (80% of it reached),"
echo "#    2 all-reduces of D floats per layer + 1 argmax per token, each log2(N) x (latency + bytes/link);"
echo "#    latency at 10 Gb/s $LAT10 s, at 100 Gb/s $LAT100 s (measured loopback: shm ${lat_shm:-?} s, tcp ${lat_tcp:-?} s)"
echo "# model link machines weights_GB_per_machine ms_weights ms_comm tokens/s speedup_vs_1"
for m in "llama-3-8b 32 4096 8.03e9" "llama-3-70b 80 8192 70.6e9"; do
    for link in 10 100; do
        lat=$LAT10
        [ "$link" = 100 ] && lat=$LAT100
        set -- $m
        awk -v n="$1" -v L="$2" -v D="$3" -v P="$4" -v bw="$MEM_BW" -v lat="$lat" -v link="$link" 'BEGIN {
            W = 2 * P
            for (N = 1; N <= 8; N *= 2) {
                tw = W / N / (bw * 1e9 * 0.8)
                steps = N > 1 ? log(N) / log(2) : 0
                tc = (2 * L + 1) * steps * (lat + D * 4 * 8 / (link * 1e9))
                t = tw + tc
                if (N == 1) t1 = t
                printf "%s %dGb/s %d %.1f %.2f %.2f %.1f %.2f\n", n, link, N, W / N / 1e9, tw * 1e3, tc * 1e3, 1 / t, t1 / t
            }
            # TP pays while the weight time it saves exceeds the exchanges it adds
            tc2 = (2 * L + 1) * (lat + D * 4 * 8 / (link * 1e9))
            printf "# %s at %d Gb/s: 2 machines pay when a token streams more than %.2f GB of weights (it streams %.1f)\n",
                n, link, 2 * tc2 * bw * 0.8, W / 1e9
        }'
    done
done
