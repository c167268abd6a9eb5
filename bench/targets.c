/*
 * targets.c - tells bench/run.sh which fusec targets to benchmark here and
 * with which C flags to compile their output.
 *
 *   targets NAME...    prints "NAME<TAB>yes|no<TAB>CFLAGS" for every NAME
 *                      the compiler's target table knows
 *
 * The flags come from the compiler's own table (target_find in
 * compiler/target.c, linked in), so the suite compiles each target's code
 * exactly as the target asks, and learns of a new target without an edit.
 * "yes" means this CPU runs that code: every -m flag maps to a CPU feature
 * checked with __builtin_cpu_supports; an unknown flag means "no" (a SIGILL
 * in the middle of a run helps nobody).
 */
#include "fusec.h"

#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
static int x86_flag_ok(const char *flag)
{
    __builtin_cpu_init();
#define F(f, feature) if (strcmp(flag, f) == 0) return __builtin_cpu_supports(feature) != 0;
    F("-mavx", "avx") F("-mavx2", "avx2") F("-mfma", "fma") F("-mf16c", "f16c")
    F("-mbmi", "bmi") F("-mbmi2", "bmi2") F("-mpopcnt", "popcnt")
    F("-msse4.1", "sse4.1") F("-msse4.2", "sse4.2") F("-mssse3", "ssse3")
    F("-mavx512f", "avx512f") F("-mavx512bw", "avx512bw") F("-mavx512vl", "avx512vl")
    F("-mavx512dq", "avx512dq") F("-mavx512cd", "avx512cd")
    F("-mavx512vnni", "avx512vnni") F("-mavx512bf16", "avx512bf16")
#undef F
    return 0;
}
#endif

/* Whether this CPU runs code compiled for target t. */
static int cpu_runs(const Target *t)
{
    char flags[512];
    const char *cf = t->cflags ? t->cflags : "";
    if (strlen(cf) >= sizeof flags)
        return 0;
    strcpy(flags, cf);
#if defined(__x86_64__) || defined(__i386__)
    if (strncmp(t->name, "aarch64", 7) == 0 || strncmp(t->name, "arm", 3) == 0)
        return 0;
    for (char *f = strtok(flags, " \t"); f; f = strtok(NULL, " \t")) {
        if (strcmp(f, "-march=native") == 0 || strcmp(f, "-mtune=native") == 0 ||
            strncmp(f, "-O", 2) == 0 || strncmp(f, "-f", 2) == 0 || strncmp(f, "-D", 2) == 0)
            continue;
        if (strncmp(f, "-m", 2) == 0 && !x86_flag_ok(f))
            return 0;
        if (strncmp(f, "-march=", 7) == 0)
            return 0; /* a named x86 level we cannot verify here */
    }
    return 1;
#elif defined(__aarch64__)
    (void)flags;
    return strncmp(t->name, "x86", 3) != 0;
#else
    (void)flags;
    return strcmp(t->name, "generic") == 0;
#endif
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const Target *t = target_find(argv[i]);
        if (t)
            printf("%s\t%s\t%s\n", t->name, cpu_runs(t) ? "yes" : "no", t->cflags ? t->cflags : "");
    }
    return fflush(stdout) == 0 ? 0 : 1;
}
