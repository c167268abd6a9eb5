/*
 * cpu.c - which vector extensions this CPU and its OS support, for the
 * dispatcher of multi-target blocks (and for fusec's --target=native).
 *
 * x86: an extension is usable only when cpuid reports it AND the OS saves
 * its registers on a context switch (xgetbv: XCR0 has the SSE/AVX state bits
 * for AVX2, F16C and AVX-VNNI, the opmask/ZMM bits too for AVX-512 and its
 * BF16/VNNI/FP16 extensions, the tile config/data bits 17 and 18 for AMX);
 * a CPU with AVX-512 under an OS that does not enable it must run the AVX2
 * variant.  AMX needs one more step on Linux, the process's permission for
 * the tile data (fr_amx_enable in amx.c): without it the AMX bits stay off.
 * AArch64 Linux: getauxval(AT_HWCAP) & HWCAP_ASIMD (every AArch64 Linux CPU
 * has it, but ask) and HWCAP_ASIMDDP for the dot-product instructions.
 *
 * Detection runs once; the result is cached with atomics so that threads
 * calling forward for the first time at once do not race.  Tests hide
 * features with fr_cpu_mask or the FUSEC_CPU_MASK environment variable, to
 * check that the dispatcher falls back to the right variant.
 */
#include "fusec_rt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

static const struct {
    const char *name;
    unsigned bits;
} feature_names[] = {
    {"avx2", FR_CPU_AVX2},
    {"fma", FR_CPU_FMA},
    {"avx512f", FR_CPU_AVX512F},
    {"avx512bw", FR_CPU_AVX512BW},
    {"avx512vl", FR_CPU_AVX512VL},
    {"neon", FR_CPU_NEON},
    {"avx512dq", FR_CPU_AVX512DQ},
    {"f16c", FR_CPU_F16C},
    {"avx512bf16", FR_CPU_AVX512BF16},
    {"avx512vnni", FR_CPU_AVX512VNNI},
    {"avxvnni", FR_CPU_AVXVNNI},
    {"avxvnniint8", FR_CPU_AVXVNNIINT8},
    {"avx512fp16", FR_CPU_AVX512FP16},
    {"amx-tile", FR_CPU_AMX_TILE},
    {"amx-bf16", FR_CPU_AMX_BF16},
    {"amx-int8", FR_CPU_AMX_INT8},
    {"dotprod", FR_CPU_NEON_DOTPROD},
};

#define AMX_BITS (FR_CPU_AMX_TILE | FR_CPU_AMX_BF16 | FR_CPU_AMX_INT8)
#define ALL_BITS ((FR_CPU_NEON_DOTPROD << 1) - 1u)

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
static void cpuid(unsigned leaf, unsigned sub, unsigned r[4]) {
    __asm__ __volatile__("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}

static unsigned long long xgetbv0(void) {
    unsigned lo, hi;
    __asm__ __volatile__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

static unsigned detect(void) {
    unsigned r[4], f = 0, max, sub1_eax = 0, sub1_edx = 0;
    cpuid(0, 0, r);
    max = r[0];
    if (max < 7)
        return 0;
    cpuid(1, 0, r);
    /* OSXSAVE (ecx 27) is needed before xgetbv may run at all. */
    if (!(r[2] & (1u << 27)) || !(r[2] & (1u << 28)))
        return 0;
    unsigned has_fma = r[2] & (1u << 12), has_f16c = r[2] & (1u << 29);
    unsigned long long xcr0 = xgetbv0();
    if ((xcr0 & 0x6) != 0x6) /* XMM and YMM state */
        return 0;
    cpuid(7, 0, r);
    if (r[0] >= 1) { /* subleaf 1 exists */
        unsigned r1[4];
        cpuid(7, 1, r1);
        sub1_eax = r1[0];
        sub1_edx = r1[3];
    }
    if (r[1] & (1u << 5))
        f |= FR_CPU_AVX2;
    if (has_fma)
        f |= FR_CPU_FMA;
    if (has_f16c)
        f |= FR_CPU_F16C;
    if (sub1_eax & (1u << 4))
        f |= FR_CPU_AVXVNNI;
    if (sub1_edx & (1u << 4))
        f |= FR_CPU_AVXVNNIINT8;
    if ((xcr0 & 0xe0) == 0xe0) { /* opmask, ZMM0-15 upper halves, ZMM16-31 */
        if (r[1] & (1u << 16))
            f |= FR_CPU_AVX512F;
        if (r[1] & (1u << 17))
            f |= FR_CPU_AVX512DQ;
        if (r[1] & (1u << 30))
            f |= FR_CPU_AVX512BW;
        if (r[1] & (1u << 31))
            f |= FR_CPU_AVX512VL;
        if (r[2] & (1u << 11))
            f |= FR_CPU_AVX512VNNI;
        if (r[3] & (1u << 23))
            f |= FR_CPU_AVX512FP16;
        if (sub1_eax & (1u << 5))
            f |= FR_CPU_AVX512BF16;
    }
    /* AMX: cpuid edx 24 (tile), 22 (bf16), 25 (int8); XCR0 17 and 18 (tile
     * config and data); then the kernel's permission for this process. */
    if ((xcr0 & 0x60000) == 0x60000 && (r[3] & (1u << 24))) {
        unsigned amx = FR_CPU_AMX_TILE;
        if (r[3] & (1u << 22))
            amx |= FR_CPU_AMX_BF16;
        if (r[3] & (1u << 25))
            amx |= FR_CPU_AMX_INT8;
        if (fr_amx_enable(NULL) == FR_OK)
            f |= amx;
    }
    return f;
}
#elif defined(__aarch64__) && defined(__linux__)
#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1ul << 1)
#endif
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1ul << 20)
#endif
static unsigned detect(void) {
    unsigned long hw = getauxval(AT_HWCAP);
    if (!(hw & HWCAP_ASIMD))
        return 0;
    return FR_CPU_NEON | ((hw & HWCAP_ASIMDDP) ? FR_CPU_NEON_DOTPROD : 0u);
}
#elif defined(__aarch64__)
static unsigned detect(void) { return FR_CPU_NEON; }
#else
static unsigned detect(void) { return 0; }
#endif

/* Parses FUSEC_CPU_MASK: names separated by commas or blanks, or a number.
 * Unknown names are ignored with a message, since this is a test hook. */
static unsigned parse_mask(const char *s) {
    char *end;
    unsigned long v;
    unsigned bits = 0;
    if (!s || !*s)
        return 0;
    v = strtoul(s, &end, 0);
    if (end != s && *end == '\0')
        return (unsigned)v & ALL_BITS;
    while (*s) {
        size_t n = strcspn(s, ", \t");
        size_t i;
        int known = 0;
        if (n == 6 && strncmp(s, "avx512", 6) == 0)
            bits |= FR_CPU_AVX512F | FR_CPU_AVX512BW | FR_CPU_AVX512VL, known = 1;
        else if (n == 3 && strncmp(s, "amx", 3) == 0)
            bits |= AMX_BITS, known = 1;
        else if (n == 3 && strncmp(s, "all", 3) == 0)
            bits |= ALL_BITS, known = 1;
        for (i = 0; i < sizeof feature_names / sizeof feature_names[0]; i++)
            if (strlen(feature_names[i].name) == n && strncmp(s, feature_names[i].name, n) == 0)
                bits |= feature_names[i].bits, known = 1;
        if (!known && n > 0)
            fprintf(stderr, "fusec runtime: FUSEC_CPU_MASK: unknown feature '%.*s' ignored\n", (int)n, s);
        s += n;
        while (*s == ',' || *s == ' ' || *s == '\t')
            s++;
    }
    return bits;
}

/* bit 31 marks "computed"; features never use it. */
#define KNOWN 0x80000000u
static unsigned detected;     /* KNOWN | features */
static unsigned env_mask;     /* KNOWN | bits */
static unsigned api_mask;     /* KNOWN | bits, once fr_cpu_mask was called */

unsigned fr_cpu_features(void) {
    unsigned d = __atomic_load_n(&detected, __ATOMIC_ACQUIRE);
    unsigned m = __atomic_load_n(&api_mask, __ATOMIC_ACQUIRE);
    if (!(d & KNOWN)) {
        d = KNOWN | detect();
        __atomic_store_n(&detected, d, __ATOMIC_RELEASE);
    }
    if (!(m & KNOWN)) {
        m = __atomic_load_n(&env_mask, __ATOMIC_ACQUIRE);
        if (!(m & KNOWN)) {
            m = KNOWN | parse_mask(getenv("FUSEC_CPU_MASK"));
            __atomic_store_n(&env_mask, m, __ATOMIC_RELEASE);
        }
    }
    return d & ~m & ALL_BITS;
}

void fr_cpu_mask(unsigned bits) { __atomic_store_n(&api_mask, KNOWN | (bits & ALL_BITS), __ATOMIC_RELEASE); }

const char *fr_cpu_feature_names(unsigned bits, char *buf, size_t size) {
    size_t i, at = 0;
    if (!buf || size == 0)
        return buf;
    buf[0] = '\0';
    for (i = 0; i < sizeof feature_names / sizeof feature_names[0]; i++) {
        if (!(bits & feature_names[i].bits))
            continue;
        int n = snprintf(buf + at, size - at, "%s%s", at ? "," : "", feature_names[i].name);
        if (n < 0 || (size_t)n >= size - at)
            break;
        at += (size_t)n;
    }
    if (at == 0)
        snprintf(buf, size, "none");
    return buf;
}

int fr_cpu_check(const char *who, const char *target, unsigned needed) {
    unsigned have = fr_cpu_features();
    char missing[256], has[256];
    fr_err amx;
    if ((have & needed) == needed)
        return FR_OK;
    /* AMX missing: say why (no AMX at all, or Linux refused the tile state) */
    amx.msg[0] = '\0';
    if (needed & ~have & AMX_BITS)
        (void)fr_amx_enable(&amx);
    return fr_seterr(NULL, FR_ECPU, "%s: target %s needs %s, which this CPU lacks (it has %s)%s%s",
                     who ? who : "?", target ? target : "?",
                     fr_cpu_feature_names(needed & ~have, missing, sizeof missing),
                     fr_cpu_feature_names(have, has, sizeof has), amx.msg[0] ? "; " : "", amx.msg);
}
