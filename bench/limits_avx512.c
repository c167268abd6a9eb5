/*
 * limits_avx512.c - the AVX-512 variant of limits_avx2.c: FMA chains on
 * 512-bit registers and a 512-bit streaming sum.
 *
 * Compiled with -mavx512f -mfma by bench/run.sh on x86-64 only; stubs
 * otherwise.  Sixteen chains cover two 512-bit FMA ports at four cycles of
 * latency (the register file has 32).
 */
#include "bench.h"

#if defined(__AVX512F__)
#include <immintrin.h>

int fma_avx512_available(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
}

#define CHAIN(i) __m512 a##i = _mm512_set1_ps(0.5f + 0.01f * (float)(i))
#define STEP(i) a##i = _mm512_fmadd_ps(a##i, m, c)

float fma_avx512(long iters, double *flops)
{
    const __m512 m = _mm512_set1_ps(0.99999f), c = _mm512_set1_ps(1e-5f);
    CHAIN(0); CHAIN(1); CHAIN(2); CHAIN(3); CHAIN(4); CHAIN(5); CHAIN(6); CHAIN(7);
    CHAIN(8); CHAIN(9); CHAIN(10); CHAIN(11); CHAIN(12); CHAIN(13); CHAIN(14); CHAIN(15);
    for (long k = 0; k < iters; k++) {
        STEP(0); STEP(1); STEP(2); STEP(3); STEP(4); STEP(5); STEP(6); STEP(7);
        STEP(8); STEP(9); STEP(10); STEP(11); STEP(12); STEP(13); STEP(14); STEP(15);
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                             _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)),
                                       _mm512_add_ps(_mm512_add_ps(a12, a13), _mm512_add_ps(a14, a15))));
    *flops = (double)iters * 16 * 16 * 2;
    return _mm512_reduce_add_ps(s);
}

float sum_avx512(const float *x, size_t n)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_add_ps(s0, _mm512_loadu_ps(x + i));
        s1 = _mm512_add_ps(s1, _mm512_loadu_ps(x + i + 16));
        s2 = _mm512_add_ps(s2, _mm512_loadu_ps(x + i + 32));
        s3 = _mm512_add_ps(s3, _mm512_loadu_ps(x + i + 48));
    }
    float t = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
    for (; i < n; i++)
        t += x[i];
    return t;
}

#else

int fma_avx512_available(void) { return 0; }
float fma_avx512(long iters, double *flops) { (void)iters; *flops = 0; return 0; }
float sum_avx512(const float *x, size_t n) { return sum_portable(x, n); }

#endif
