/*
 * target.c - the table of code-generation targets.
 *
 * A target descriptor tells the emitter what the machine offers: how many
 * floats a vector register holds, how many registers there are, which flags
 * the C compiler needs, the GCC target attribute that lets one function use
 * the ISA without global -m flags, the preprocessor condition under which it
 * compiles at all, and the CPU features (fusec_rt.h) the dispatcher of a
 * multi-target file checks before choosing it.  The intrinsic table that
 * maps the emitter's vector vocabulary to the ISA lives in vec.c, indexed by
 * `isa`, so kernels are written once and never carry an #ifdef per use.
 *
 * Two names are not rows: "native" is the best row this machine can run
 * (cpuid/xgetbv through the runtime's fr_cpu_features, so FUSEC_CPU_MASK
 * applies to it too), and "multi:A,B,..." builds a descriptor whose variants
 * are rows, in the order the dispatcher tries them.
 */
#include "fusec.h"
#include "fusec_rt.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#define X86 "defined(__x86_64__) || defined(__i386__)"
#define AVX2_BITS (FR_CPU_AVX2 | FR_CPU_FMA)
#define AVX512_BITS (FR_CPU_AVX512F | FR_CPU_AVX512BW | FR_CPU_AVX512VL | AVX2_BITS)
#define AVX512BF16_BITS (AVX512_BITS | FR_CPU_AVX512DQ | FR_CPU_F16C | FR_CPU_AVX512BF16 | FR_CPU_AVX512VNNI)
#define SPR_BITS (AVX512BF16_BITS | FR_CPU_AMX_TILE | FR_CPU_AMX_BF16 | FR_CPU_AMX_INT8)
#define SPR_ATTR "avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx512vnni,f16c,avx2,fma"

/* GEMM blocking per ISA (emit_gemm.c explains every number: the register
 * tile fills the vector registers, KC x NR floats of B stay in L1, MC x KC
 * of A in L2, KC x NC of B in L3) and the KK_MLP row block budget: 2^22
 * floats of h, half of a 32 MiB L3.  The attention kernel (emit_fused.c):
 * blocks of 64 keys and tiles of 64 query rows (64 x 64 scores, 16 KiB, and
 * the transposed key block of hd x 64 stay in L1 with the q tile), scores
 * by direct dot products up to 8 rows (decode: transposing the keys costs
 * more than it saves), at least 16 keys per split; fa_unit is the keys one
 * register block of scores covers (4 vectors of 16 on AVX-512, 2 of 8 on
 * AVX2, 4 of 4 on NEON, 4 floats generic).  Up to 8 rows a linear is a
 * GEMV (emit_gemm.c says why).  The int8 GEMM (emit_c.c's k_qgemm)
 * quantizes 516 rows per chunk (86 groups of 6 on VNNI; AMX: 512, 16 tiles
 * of 32) and packs 16 blocks of 32 depths per panel (16 x 1152 bytes, L1).  A tune file may replace all
 * but the register tile (cost.c, docs/fusion.md). */
#define MLP_FLOATS ((int64_t)1 << 22)
#define FA(unit) 64, unit, 64, 8, 16
#define QG 516, 16
static const TargetTiles tiles_generic = {4, 4, 1, 4, 1, 256, 128, 512, 512, 4096, MLP_FLOATS, FA(4), 8, QG};
static const TargetTiles tiles_avx2 = {6, 16, 8, 2, 1, 256, 144, 512, 576, 4096, MLP_FLOATS, FA(16), 8, QG};
static const TargetTiles tiles_avx512 = {14, 32, 16, 2, 1, 256, 168, 512, 672, 4096, MLP_FLOATS, FA(64), 8, QG};
static const TargetTiles tiles_amx = {32, 32, 16, 2, 1, 512, 128, 512, 640, 4096, MLP_FLOATS, FA(64), 8, 512, 16};
static const TargetTiles tiles_neon = {8, 12, 4, 3, 2, 256, 128, 480, 512, 4032, MLP_FLOATS, FA(16), 8, QG};
#undef FA
#undef QG

/* The cost model's machine per row when no tune file is given: the FMA
 * peaks are what bench/limits.c measured on a Zen 4 core (avx512 216,
 * avx2 105 GFLOP/s; generic: 30, four SSE lanes, since gcc vectorises the
 * portable GEMM tile, which reached 21.6 GFLOP/s on W2), bf16 and int8 dot products at their
 * instructions' throughput relative to those, AMX at half its nominal
 * 2048 bf16 FLOP per cycle; read bandwidth 17 GB/s per core, 34 in all
 * (the same machine); caches of a Zen 4 core.  NEON: a 2.5 GHz core with
 * two 128-bit FMA pipes.  `fusec tune` measures the machine instead. */
#define KIB 1024
#define MIB (1024 * 1024)
static const TargetPeaks peaks_generic = {30, 0, 0, 17, 34, 32 * KIB, 1 * MIB, 32 * MIB};
static const TargetPeaks peaks_avx2 = {100, 0, 0, 17, 34, 32 * KIB, 1 * MIB, 32 * MIB};
static const TargetPeaks peaks_avx2_vnni = {100, 0, 400, 17, 34, 48 * KIB, 2 * MIB, 32 * MIB};
static const TargetPeaks peaks_avx512 = {200, 0, 0, 17, 34, 32 * KIB, 1 * MIB, 32 * MIB};
static const TargetPeaks peaks_avx512_bf16 = {200, 400, 800, 17, 34, 32 * KIB, 1 * MIB, 32 * MIB};
static const TargetPeaks peaks_spr = {200, 1000, 2000, 17, 34, 48 * KIB, 2 * MIB, 32 * MIB};
static const TargetPeaks peaks_neon = {40, 0, 0, 17, 34, 64 * KIB, 1 * MIB, 32 * MIB};
static const TargetPeaks peaks_neon_dp = {40, 0, 160, 17, 34, 64 * KIB, 1 * MIB, 32 * MIB};

/* Each row's tag is its own: it names the row's helpers (fu_exp_<tag>, ...)
 * and variant functions, so rows that share an ISA may share a multi: file. */
static const Target targets[] = {
    {.name = "generic", .cflags = "", .vec_floats = 1, .nregs = 16, .isa = ISA_GENERIC,
     .tag = "generic", .attr = "", .guard = "", .features = 0,
     .tiles = &tiles_generic, .tiles_amx = NULL, .peaks = &peaks_generic},
    {.name = "x86-64-avx2", .cflags = "-mavx2 -mfma", .vec_floats = 8, .nregs = 16,
     .isa = ISA_AVX2, .tag = "avx2", .attr = "avx2,fma", .guard = X86, .features = AVX2_BITS,
     .tiles = &tiles_avx2, .tiles_amx = NULL, .peaks = &peaks_avx2},
    /* AVX2 with F16C and AVX-VNNI (the VEX vpdpbusd): Alder Lake and later
     * client cores, Sierra Forest */
    {.name = "x86-64-avx2-vnni", .cflags = "-mavx2 -mfma -mf16c -mavxvnni", .vec_floats = 8, .nregs = 16,
     .isa = ISA_AVX2, .tag = "avx2vnni", .attr = "avx2,fma,f16c,avxvnni", .guard = X86,
     .features = AVX2_BITS | FR_CPU_F16C | FR_CPU_AVXVNNI,
     .tiles = &tiles_avx2, .tiles_amx = NULL, .peaks = &peaks_avx2_vnni},
    {.name = "x86-64-avx512", .cflags = "-mavx512f -mavx512bw -mavx512vl -mavx2 -mfma",
     .vec_floats = 16, .nregs = 32, .isa = ISA_AVX512, .tag = "avx512",
     .attr = "avx512f,avx512bw,avx512vl,avx2,fma", .guard = X86, .features = AVX512_BITS,
     .tiles = &tiles_avx512, .tiles_amx = NULL, .peaks = &peaks_avx512},
    /* AVX-512 with DQ, BF16 (vdpbf16ps), VNNI (vpdpbusd) and F16C: Cooper
     * Lake, AMD Zen 4 and Zen 5 */
    {.name = "x86-64-avx512-bf16",
     .cflags = "-mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512bf16 -mavx512vnni -mf16c -mavx2 -mfma",
     .vec_floats = 16, .nregs = 32, .isa = ISA_AVX512, .tag = "avx512bf16", .attr = SPR_ATTR, .guard = X86,
     .features = AVX512BF16_BITS,
     .tiles = &tiles_avx512, .tiles_amx = NULL, .peaks = &peaks_avx512_bf16},
    /* all that, and AMX tiles with bf16 and int8 products: Sapphire Rapids,
     * Emerald Rapids, Granite Rapids (the process must also have Linux's
     * permission for the tile state: runtime/amx.c) */
    {.name = "x86-64-spr",
     .cflags = "-mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512bf16 -mavx512vnni -mf16c -mavx2 -mfma "
               "-mamx-tile -mamx-bf16 -mamx-int8",
     .vec_floats = 16, .nregs = 32, .isa = ISA_AVX512, .tag = "spr", .attr = SPR_ATTR ",amx-tile,amx-bf16,amx-int8",
     .guard = X86, .features = SPR_BITS,
     .tiles = &tiles_avx512, .tiles_amx = &tiles_amx, .peaks = &peaks_spr},
    {.name = "aarch64-neon", .cflags = "", .vec_floats = 4, .nregs = 32, .isa = ISA_NEON,
     .tag = "neon", .attr = "", .guard = "defined(__aarch64__)", .features = FR_CPU_NEON,
     .tiles = &tiles_neon, .tiles_amx = NULL, .peaks = &peaks_neon},
    /* ARMv8.2-A's dot product (sdot/udot): Cortex-A76 and later, Neoverse
     * N1/V1, Apple M1, Graviton 2 */
    {.name = "aarch64-neon-dotprod", .cflags = "-march=armv8.2-a+dotprod", .vec_floats = 4, .nregs = 32,
     .isa = ISA_NEON, .tag = "neondp", .attr = "arch=armv8.2-a+dotprod", .guard = "defined(__aarch64__)",
     .features = FR_CPU_NEON | FR_CPU_NEON_DOTPROD,
     .tiles = &tiles_neon, .tiles_amx = NULL, .peaks = &peaks_neon_dp},
};

#define NTARGETS (sizeof targets / sizeof targets[0])

static const Target *find_row(const char *name, size_t len) {
    for (size_t i = 0; i < NTARGETS; i++)
        if (strlen(targets[i].name) == len && strncmp(targets[i].name, name, len) == 0)
            return &targets[i];
    return NULL;
}

/* The best row whose features this CPU has (the table is not in preference
 * order, so rank explicitly: widest vectors first, then most features). */
static const Target *native(void) {
    static const char *const order[] = {"x86-64-spr",           "x86-64-avx512-bf16", "x86-64-avx512",
                                        "aarch64-neon-dotprod", "aarch64-neon",       "x86-64-avx2-vnni",
                                        "x86-64-avx2"};
    unsigned have = fr_cpu_features();
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        const Target *t = find_row(order[i], strlen(order[i]));
        if ((t->features & have) == t->features)
            return t;
    }
    return &targets[0];
}

/* "multi:A,B,...": every name a row (or native), no row twice, at most
 * FU_MAX_VARIANTS.  The result is cached so that equal names give equal
 * pointers, like the rows.  The cache lives outside the arena (static
 * storage, names from malloc), because a driver may release the arena
 * between inputs (the fuzz harness does) while the cache lives on. */
static const Target *multi(const char *name) {
    static Target made[16];
    static int nmade;
    static Target scratch;
    const char *p = name + strlen("multi:");
    Target *t;
    for (int i = 0; i < nmade; i++)
        if (strcmp(made[i].name, name) == 0)
            return &made[i];
    t = nmade < (int)(sizeof made / sizeof made[0]) ? &made[nmade] : &scratch;
    memset(t, 0, sizeof *t);
    t->name = name; /* the caller's, until the name is known to be valid */
    t->cflags = "";
    t->tag = "multi";
    t->attr = "";
    t->guard = "";
    t->isa = ISA_GENERIC;
    while (*p) {
        size_t n = strcspn(p, ",");
        const Target *v = n == 6 && strncmp(p, "native", 6) == 0 ? native() : find_row(p, n);
        if (!v || t->nvariants == FU_MAX_VARIANTS)
            return NULL;
        for (int i = 0; i < t->nvariants; i++)
            if (t->variants[i] == v)
                return NULL;
        t->variants[t->nvariants++] = v;
        if (v->vec_floats > t->vec_floats)
            t->vec_floats = v->vec_floats;
        p += n;
        if (*p == ',' && *++p == '\0')
            return NULL; /* a trailing comma */
    }
    if (t->nvariants == 0)
        return NULL;
    t->nregs = t->variants[0]->nregs;
    t->tiles = t->variants[0]->tiles;
    t->tiles_amx = t->variants[0]->tiles_amx;
    t->peaks = t->variants[0]->peaks;
    char *copy = malloc(strlen(name) + 1);
    if (!copy)
        fu_internal(__FILE__, __LINE__, "out of memory");
    strcpy(copy, name);
    t->name = copy;
    if (t != &scratch)
        nmade++;
    return t;
}

/* t with other tiles: a copy (and, for multi:, a copy of its first variant)
 * in the arena, which lives as long as the compilation. */
static bool same_tiles(const TargetTiles *a, const TargetTiles *b) {
    return a->mr == b->mr && a->nr == b->nr && a->vf == b->vf && a->nv == b->nv && a->unroll == b->unroll &&
           a->kc == b->kc && a->mc == b->mc && a->nc == b->nc && a->mchunk == b->mchunk && a->gch == b->gch &&
           a->mlp_floats == b->mlp_floats && a->fa_bk == b->fa_bk && a->fa_unit == b->fa_unit &&
           a->fa_rows == b->fa_rows && a->fa_direct == b->fa_direct && a->fa_split == b->fa_split &&
           a->gemv_rows == b->gemv_rows && a->qmc == b->qmc && a->qkb == b->qkb;
}

const Target *target_tuned(const Target *t, const TargetTiles *tiles) {
    if (same_tiles(t->tiles, tiles))
        return t;
    TargetTiles *tl = fu_alloc(sizeof *tl);
    *tl = *tiles;
    Target *c = fu_alloc(sizeof *c);
    *c = *t;
    c->tiles = tl;
    if (t->nvariants) {
        Target *v = fu_alloc(sizeof *v);
        *v = *t->variants[0];
        v->tiles = tl;
        c->variants[0] = v;
    }
    return c;
}

/* The target called `name` (NULL means "generic"), or NULL if unknown. */
const Target *target_find(const char *name) {
    if (!name)
        name = "generic";
    if (strcmp(name, "native") == 0)
        return native();
    if (strncmp(name, "multi:", 6) == 0)
        return multi(name);
    return find_row(name, strlen(name));
}

/* ---- messages -------------------------------------------------------------------
 * Names people type for the targets (GCC's -march levels, ISA names, other
 * tools' spellings): only ever suggested, never accepted, so a build line
 * says exactly one thing. */
static const struct {
    const char *alias, *name;
} aliases[] = {
    {"avx512", "x86-64-avx512"},     {"avx-512", "x86-64-avx512"},  {"avx512f", "x86-64-avx512"},
    {"x86-64-v4", "x86-64-avx512"},  {"skylake-avx512", "x86-64-avx512"},
    {"avx2", "x86-64-avx2"},         {"avx", "x86-64-avx2"},        {"fma", "x86-64-avx2"},
    {"x86-64-v3", "x86-64-avx2"},    {"haswell", "x86-64-avx2"},
    {"neon", "aarch64-neon"},        {"aarch64", "aarch64-neon"},   {"arm64", "aarch64-neon"},
    {"armv8", "aarch64-neon"},       {"armv8-a", "aarch64-neon"},   {"arm", "aarch64-neon"},
    {"x86-64-v4-bf16", "x86-64-avx512-bf16"}, {"avx512bf16", "x86-64-avx512-bf16"},
    {"avx512-bf16", "x86-64-avx512-bf16"}, {"avx512vnni", "x86-64-avx512-bf16"},
    {"avx512-vnni", "x86-64-avx512-bf16"}, {"x86-64-avx512-vnni", "x86-64-avx512-bf16"},
    {"cooperlake", "x86-64-avx512-bf16"}, {"znver4", "x86-64-avx512-bf16"}, {"zen4", "x86-64-avx512-bf16"},
    {"znver5", "x86-64-avx512-bf16"}, {"zen5", "x86-64-avx512-bf16"},
    {"spr", "x86-64-spr"}, {"sapphirerapids", "x86-64-spr"}, {"sapphire-rapids", "x86-64-spr"},
    {"emeraldrapids", "x86-64-spr"}, {"graniterapids", "x86-64-spr"}, {"amx", "x86-64-spr"},
    {"x86-64-amx", "x86-64-spr"}, {"x86-64-avx512-amx", "x86-64-spr"}, {"amx-bf16", "x86-64-spr"},
    {"amx-int8", "x86-64-spr"},
    {"avxvnni", "x86-64-avx2-vnni"}, {"avx-vnni", "x86-64-avx2-vnni"}, {"x86-64-avxvnni", "x86-64-avx2-vnni"},
    {"alderlake", "x86-64-avx2-vnni"}, {"sierraforest", "x86-64-avx2-vnni"}, {"vnni", "x86-64-avx2-vnni"},
    {"dotprod", "aarch64-neon-dotprod"}, {"neon-dotprod", "aarch64-neon-dotprod"},
    {"aarch64-dotprod", "aarch64-neon-dotprod"}, {"armv8.2-a", "aarch64-neon-dotprod"},
    {"armv8.2-a+dotprod", "aarch64-neon-dotprod"}, {"sdot", "aarch64-neon-dotprod"},
    {"neoverse-n1", "aarch64-neon-dotprod"}, {"apple-m1", "aarch64-neon-dotprod"},
    {"x86-64", "generic"},           {"x86_64", "generic"},         {"portable", "generic"},
    {"scalar", "generic"},           {"c", "generic"},              {"none", "generic"},
    {"host", "native"},              {"auto", "native"},            {"multi", "multi:x86-64-avx512,x86-64-avx2,generic"},
};

/* Levenshtein distance, case-insensitive, '_' equal to '-'; long strings
 * (nobody misspells a target by 60 characters) count as far. */
static int edit_distance(const char *a, size_t na, const char *b) {
    size_t nb = strlen(b);
    int row[64];
    if (na >= 64 || nb >= 64)
        return 99;
    for (size_t j = 0; j <= nb; j++)
        row[j] = (int)j;
    for (size_t i = 1; i <= na; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= nb; j++) {
            int ca = tolower((unsigned char)(a[i - 1] == '_' ? '-' : a[i - 1]));
            int cb = tolower((unsigned char)(b[j - 1] == '_' ? '-' : b[j - 1]));
            int best = diag + (ca != cb);
            if (row[j] + 1 < best)
                best = row[j] + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            diag = row[j];
            row[j] = best;
        }
    }
    return row[nb];
}

/* The valid name nearest to name[0..len), or NULL when none is near:
 * an alias first, else a name within a third of its length. */
static const char *nearest(const char *name, size_t len, bool in_multi) {
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
        if (edit_distance(name, len, aliases[i].alias) == 0)
            return in_multi && strncmp(aliases[i].name, "multi:", 6) == 0 ? NULL : aliases[i].name;
    const char *best = NULL;
    int best_d = 99;
    for (size_t i = 0; i <= NTARGETS; i++) {
        const char *cand = i < NTARGETS ? targets[i].name : "native";
        int d = edit_distance(name, len, cand);
        if (d < best_d) {
            best_d = d;
            best = cand;
        }
    }
    return best_d <= (int)(strlen(best) + 2) / 3 ? best : NULL;
}

/* "generic, x86-64-avx2, ..., native": what a multi: entry may be. */
static const char *row_names(void) {
    Buf b = {0};
    for (size_t i = 0; i < NTARGETS; i++)
        buf_printf(&b, "%s, ", targets[i].name);
    buf_puts(&b, "native");
    const char *s = fu_strdup(b.data);
    free(b.data);
    return s;
}

static const char *unknown(const char *entry, size_t len, const char *in) {
    const char *near = nearest(entry, len, in != NULL);
    const char *where = in ? fu_format(" in '%s'", in) : "";
    if (near)
        return fu_format("unknown target '%.*s'%s; did you mean '%s'?", (int)len, entry, where, near);
    return fu_format("unknown target '%.*s'%s (targets: %s)", (int)len, entry, where,
                     in ? row_names() : target_names());
}

/* Why target_find(name) fails: the bad entry and the nearest valid name. */
const char *target_error(const char *name) {
    if (strncmp(name, "multi:", 6) != 0)
        return unknown(name, strlen(name), NULL);
    const char *p = name + 6;
    const Target *seen[FU_MAX_VARIANTS];
    const char *seen_as[FU_MAX_VARIANTS];   /* the entry as written ("native") */
    int n = 0;
    if (!*p)
        return fu_format("'%s' lists no targets (e.g. multi:x86-64-avx512,x86-64-avx2,generic)", name);
    for (;;) {
        size_t len = strcspn(p, ",");
        if (len == 0)
            return fu_format("an empty entry in '%s' (a stray comma)", name);
        if (len >= 6 && strncmp(p, "multi:", 6) == 0)
            return fu_format("'%s' cannot hold another multi: target", name);
        const Target *v = len == 6 && strncmp(p, "native", 6) == 0 ? native() : find_row(p, len);
        if (!v)
            return unknown(p, len, name);
        const char *as = fu_strndup(p, len);
        for (int i = 0; i < n; i++)
            if (seen[i] == v)
                return strcmp(as, seen_as[i]) == 0
                           ? fu_format("'%s' is listed twice in '%s'", as, name)
                           : fu_format("'%s' and '%s' in '%s' are both %s here", seen_as[i], as, name,
                                       v->name);
        if (n == FU_MAX_VARIANTS)
            return fu_format("'%s' lists more than %d targets", name, FU_MAX_VARIANTS);
        seen_as[n] = as;
        seen[n++] = v;
        p += len;
        if (!*p)
            break;
        p++;
        if (!*p)
            return fu_format("an empty entry in '%s' (a stray comma)", name);
    }
    return fu_format("'%s' is not a valid target", name);
}

/* The dispatcher runs the first variant whose features the CPU has, so a
 * variant after one that needs a subset of its features (and compiles
 * wherever it does) is never run: generic before anything, x86-64-avx2
 * before x86-64-avx512.  One message per such variant; returns the count. */
int target_shadowed(const Target *t, const char **msgs) {
    int n = 0;
    for (int j = 1; j < t->nvariants; j++) {
        const Target *v = t->variants[j];
        for (int i = 0; i < j; i++) {
            const Target *u = t->variants[i];
            if ((u->features & v->features) == u->features &&
                (!u->guard[0] || strcmp(u->guard, v->guard) == 0)) {
                msgs[n++] = fu_format(
                    "'%s' in '%s' can never be chosen: '%s', listed before it, runs on every CPU that "
                    "runs it (the first variant the CPU supports runs: list the most specific first, "
                    "generic last)",
                    v->name, t->name, u->name);
                break;
            }
        }
    }
    return n;
}

const char *target_names(void) {
    return "generic (default), x86-64-avx2, x86-64-avx2-vnni, x86-64-avx512, x86-64-avx512-bf16, x86-64-spr, "
           "aarch64-neon, aarch64-neon-dotprod, native, multi:T1,T2,...";
}
