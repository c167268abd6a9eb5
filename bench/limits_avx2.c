/*
 * limits_avx2.c - the AVX2+FMA kernels that measure the machine's limits:
 * independent FMA chains (peak) and a streaming sum (read bandwidth).
 *
 * Compiled with -mavx2 -mfma by bench/run.sh on x86-64 only; without those
 * flags the file compiles to stubs that report "not available", so the
 * driver links on any machine.  Twelve chains keep two FMA ports busy
 * through a four-cycle latency with room to spare.
 */
#include "bench.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

int fma_avx2_available(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

#define CHAIN(i) __m256 a##i = _mm256_set1_ps(0.5f + 0.01f * (float)(i))
#define STEP(i) a##i = _mm256_fmadd_ps(a##i, m, c)

float fma_avx2(long iters, double *flops)
{
    /* a = a * m + c converges to 1 without overflow or denormals */
    const __m256 m = _mm256_set1_ps(0.99999f), c = _mm256_set1_ps(1e-5f);
    CHAIN(0); CHAIN(1); CHAIN(2); CHAIN(3); CHAIN(4); CHAIN(5);
    CHAIN(6); CHAIN(7); CHAIN(8); CHAIN(9); CHAIN(10); CHAIN(11);
    for (long k = 0; k < iters; k++) {
        STEP(0); STEP(1); STEP(2); STEP(3); STEP(4); STEP(5);
        STEP(6); STEP(7); STEP(8); STEP(9); STEP(10); STEP(11);
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                             _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
    float out[8];
    _mm256_storeu_ps(out, s);
    *flops = (double)iters * 12 * 8 * 2;
    return out[0] + out[7];
}

float sum_avx2(const float *x, size_t n)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_add_ps(s0, _mm256_loadu_ps(x + i));
        s1 = _mm256_add_ps(s1, _mm256_loadu_ps(x + i + 8));
        s2 = _mm256_add_ps(s2, _mm256_loadu_ps(x + i + 16));
        s3 = _mm256_add_ps(s3, _mm256_loadu_ps(x + i + 24));
    }
    float out[8], t = 0.0f;
    _mm256_storeu_ps(out, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (int k = 0; k < 8; k++)
        t += out[k];
    for (; i < n; i++)
        t += x[i];
    return t;
}

#else

int fma_avx2_available(void) { return 0; }
float fma_avx2(long iters, double *flops) { (void)iters; *flops = 0; return 0; }
float sum_avx2(const float *x, size_t n) { return sum_portable(x, n); }

#endif
