/*
 * fusec_rt.h - the fusec runtime: what every generated kernel file would
 * otherwise repeat.
 *
 *  - errors:       fr_err carries one message naming the problem (tensor, offset, ...)
 *  - memory:       64-byte aligned allocation for workspaces and caches
 *  - safetensors:  a validating, mmap-based reader, a small writer, and binding
 *                  weights by name (with a prefix such as "model.layers.0.")
 *  - blocks:       fr_block_desc, the table every generated block exports so that
 *                  generic drivers (fusec check, tests, benchmarks) can run any block
 *  - timers:       a monotonic clock
 *
 * C99, POSIX threads, libc and libm.  Every function that can fail returns 0
 * on success and a negative FR_E* code on failure, with a message in *err
 * when err is not NULL and in fr_last_error() always.  Nothing here aborts
 * on bad input.
 */
#ifndef FUSEC_RT_H
#define FUSEC_RT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FR_VERSION "0.1.0"

/* ---- errors ------------------------------------------------------------ */

enum {
    FR_OK = 0,
    FR_EIO = -1,      /* open/read/mmap/write failed */
    FR_EFORMAT = -2,  /* the file is not valid safetensors */
    FR_ENOTFOUND = -3,/* a named tensor is missing */
    FR_ETYPE = -4,    /* a tensor has the wrong dtype */
    FR_ESHAPE = -5,   /* a tensor has the wrong shape */
    FR_ENOMEM = -6,   /* an allocation failed */
    FR_EINVAL = -7,   /* another bad argument (a rank out of range, a duplicate name, ...) */
    /* what NAME_forward refuses, one code per cause */
    FR_ENULL = -8,      /* a NULL pointer argument or an unbound weight */
    FR_EDIM = -9,       /* a symbol out of range, or a dimension that would be negative */
    FR_ECAPACITY = -10, /* the caches have fewer rows than the call needs */
    FR_ECPU = -11,      /* this CPU lacks a feature the block's target needs */
    FR_EWORKSPACE = -12,/* the workspace is too small or not 64-byte aligned */
    FR_EINDEX = -13,    /* an id of embedding, gather, moe_up or moe_down is outside its table (the message names it) */
    FR_ECOMM = -14      /* tensor parallelism: the ranks disagree, a peer died or timed out (docs/distributed.md) */
};

typedef struct fr_err {
    int code;
    char msg[512];
} fr_err;

/*
 * Sets err (if not NULL) and returns code. printf-style.  Every call also
 * keeps the message as this thread's last error (fr_last_error), so a
 * function without an fr_err parameter (NAME_forward) still says why it
 * failed.
 */
int fr_seterr(fr_err *err, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* A short text for a code: "cache capacity exceeded" for FR_ECAPACITY, ... */
const char *fr_strerror(int code);

/*
 * The message of the last runtime failure on the calling thread, naming the
 * cause ("llama_layer_forward: the caches hold 16 rows, the call needs
 * P + T = 17"), or "" when none failed yet.  A successful call leaves it as
 * it was: read it right after a call returned non-zero.
 */
const char *fr_last_error(void);

/* ---- memory ------------------------------------------------------------ */

#define FR_ALIGN 64
/* 64-byte aligned, zero-filled; NULL on failure or n == 0 overflow. */
void *fr_alloc(size_t nbytes);
void fr_free(void *p);

/* ---- dtypes and shapes --------------------------------------------------- */

#define FR_MAX_RANK 8
#define FR_MAX_SYMS 8

typedef enum fr_dtype {
    FR_F32 = 0,
    FR_F64,
    FR_I32,
    FR_I64,
    FR_F16,
    FR_BF16,
    FR_U8,
    FR_I8,
    FR_BOOL,
    FR_Q8_0,        /* block types (docs/quantization.md): stored in a file as U8 */
    FR_Q4_0,        /* with a "__metadata__" entry; 32 elements per block */
    FR_NDTYPES
} fr_dtype;

const char *fr_dtype_name(fr_dtype t); /* "F32", ... as safetensors spells it; "Q8_0", "Q4_0" */
size_t fr_dtype_size(fr_dtype t);      /* bytes per element; 0 for the block types */
int fr_dtype_block(fr_dtype t);        /* elements per block: 1, or 32 for Q8_0 and Q4_0 */
size_t fr_dtype_block_bytes(fr_dtype t); /* bytes per block: 34 for Q8_0, 18 for Q4_0 */
/* Bytes of a tensor of this dtype and shape: the last dim is a row of
 * ceil(n / block) blocks (the last one zero-padded).  -1 on overflow, a
 * negative dim, or a block type of rank 0. */
int fr_dtype_nbytes(fr_dtype t, int rank, const int64_t *shape, uint64_t *nbytes);

/* ---- safetensors --------------------------------------------------------- */

typedef struct fr_tensor {
    const char *name;     /* points into the file's parsed header */
    fr_dtype dtype;       /* Q8_0/Q4_0 for a quantized tensor (stored as U8) */
    int rank;
    int64_t shape[FR_MAX_RANK]; /* the logical shape, also for quantized tensors */
    const void *data;     /* inside the mapping, or an owned copy when the file places
                             it misaligned: always aligned to the element size */
    size_t nbytes;        /* fr_dtype_nbytes of dtype and shape */
} fr_tensor;

/* One "__metadata__" entry, decoded. */
typedef struct fr_meta {
    const char *key, *value;
} fr_meta;

typedef struct fr_st {
    void *map;            /* the mmap'ed file */
    size_t size;
    int ntensors;
    fr_tensor *tensors;   /* sorted by name */
    char *metadata_json;  /* raw "__metadata__" object text, or NULL */
    int nmeta;
    fr_meta *meta;        /* its entries, decoded, in file order */
    char *names;          /* storage for tensor names */
    char *path;           /* the path given to fr_st_open, for messages */
    void *owned;          /* aligned copies of tensors the file places misaligned, or NULL */
    void *slices;         /* copies of strided slices made by fr_st_bind_slice (freed by fr_st_close) */
} fr_st;

/*
 * Opens and validates a safetensors file: the 8-byte header length, a JSON
 * header that parses, known dtypes, shapes that multiply to the byte ranges,
 * offsets inside the data area, no overlaps, no duplicate names, metadata of
 * strings with no key twice.  Quantized tensors (docs/quantization.md): a U8
 * tensor NAME with a metadata entry "fusec.quant.NAME" = "Q8_0[N,K]" is
 * presented as Q8_0 of shape [N, K] once its bytes, its zero padding and the
 * entry agree.  Any defect gives FR_EFORMAT and a message naming the tensor
 * and the problem.
 */
int fr_st_open(fr_st *f, const char *path, fr_err *err);
void fr_st_close(fr_st *f);
const fr_tensor *fr_st_find(const fr_st *f, const char *name);
/* The value of a "__metadata__" entry, or NULL. */
const char *fr_st_metadata(const fr_st *f, const char *key);
/* The metadata key prefix of quantized tensors. */
#define FR_QUANT_KEY "fusec.quant."

/*
 * Looks up prefix+name, checks dtype and shape, and returns its data.
 * Messages name the full tensor name and what was expected, e.g.
 *   "tensor 'w.self_attn.q_proj.weight': shape [256, 255], block expects [256, 256]"
 */
int fr_st_bind(const fr_st *f, const char *prefix, const char *name, fr_dtype dtype,
               int rank, const int64_t *shape, const void **data, fr_err *err);
/*
 * Tensor parallelism (docs/distributed.md): fr_st_bind of the checkpoint's
 * whole tensor (shape `shape`), then this rank's slice [start, start + len)
 * along `axis`.  Axis 0 (contiguous rows) points into the file; another axis
 * (the columns of a row-parallel weight) is copied once into memory the
 * file owns until fr_st_close, f32/bf16/f16 only.
 */
int fr_st_bind_slice(const fr_st *f, const char *prefix, const char *name, fr_dtype dtype, int rank,
                     const int64_t *shape, int axis, int64_t start, int64_t len, const void **data,
                     fr_err *err);

/* A safetensors writer: add tensors (data copied by reference until write), then write. */
typedef struct fr_st_writer fr_st_writer;
fr_st_writer *fr_stw_new(void);
int fr_stw_add(fr_st_writer *w, const char *name, fr_dtype dtype, int rank,
               const int64_t *shape, const void *data, fr_err *err);
/* A "__metadata__" entry (key and value copied); keys starting with
 * FR_QUANT_KEY are the writer's own: fr_stw_add of a Q8_0/Q4_0 tensor makes them. */
int fr_stw_metadata(fr_st_writer *w, const char *key, const char *value, fr_err *err);
/* Writes to path via a temporary file and rename, so a failure leaves no partial file. */
int fr_stw_write(fr_st_writer *w, const char *path, fr_err *err);
void fr_stw_free(fr_st_writer *w);

/* ---- blocks --------------------------------------------------------------- */

/*
 * A tensor of a block's interface.  Each dimension is affine in the block's
 * symbolic dims: shape[d] = shape_c[d] + sum_s shape_k[d][s] * syms[s].
 */
typedef struct fr_tensor_desc {
    const char *name;       /* the checkpoint / golden name, e.g. "self_attn.q_proj.weight" */
    fr_dtype dtype;
    int rank;
    int64_t shape_c[FR_MAX_RANK];
    int32_t shape_k[FR_MAX_RANK][FR_MAX_SYMS];
} fr_tensor_desc;

/* Tensor parallelism (a weight of a --tp block): axis 0, the whole tensor;
 * else this rank's slice [start, start + shape_c[axis - 1]) along axis
 * axis - 1 of the checkpoint's tensor, whose extent there is `full`. */
typedef struct fr_tp_slice {
    int axis;
    int64_t start, full;
} fr_tp_slice;

/* Evaluates a desc's shape for given symbol values. */
void fr_desc_shape(const fr_tensor_desc *d, const int64_t *syms, int64_t *shape);
int64_t fr_desc_numel(const fr_tensor_desc *d, const int64_t *syms);

/*
 * Every generated block exports one of these (NAME_desc).  Caches are
 * declared [P, ...]: their first dim is the symbol cache_sym (the number of
 * rows already cached); a cache buffer holds `capacity` rows.
 */
typedef struct fr_block_desc {
    const char *name;
    const char *target;
    int nsyms;
    const char *const *sym_names;
    int cache_sym;          /* index of the cached-length symbol, -1 if no cache */
    int ninputs, nweights, noutputs, ncaches;
    const fr_tensor_desc *inputs, *weights, *outputs, *caches;
    /* NAME_workspace_size: bytes for these symbols on fr_get_num_threads() threads */
    size_t (*workspace_size)(const int64_t *syms);
    /* NAME_forward: weights[i], caches[i], inputs[i], outputs[i] follow the
     * desc arrays' order (a cache of desc dtype F16 or BF16 holds 16-bit elements
     * behind its float pointer); returns 0 or the FR_E* code forward returns. */
    int (*run)(const void *const *weights, float *const *caches, int64_t cache_capacity,
               const int64_t *syms, const void *const *inputs, void *const *outputs,
               void *workspace, size_t workspace_bytes);
    /* NAME_forward_batch, NULL when the block has none: nseq sequences,
     * caches[s][i] cache i of sequence s (capacity[s] rows, NULL caches[s]
     * for none), symbol j of sequence s at syms[j * nseq + s]; inputs and
     * outputs hold the sequences' tokens one after another. */
    int (*run_batch)(const void *const *weights, float *const *const *caches, const int64_t *capacity,
                     int64_t nseq, const int64_t *syms, const void *const *inputs, void *const *outputs,
                     void *workspace, size_t workspace_bytes);
    /* NAME_workspace_size_batch (NULL with run_batch): syms as for run_batch */
    size_t (*workspace_size_batch)(int64_t nseq, const int64_t *syms);
    /* --tp=N --tp-rank=R: the rank this block computes, and each weight's
     * slice (tp_slices[i] for weights[i]); 0, 0 and NULL for a whole block */
    int tp_size, tp_rank;
    const fr_tp_slice *tp_slices;
    /* vocabulary-parallel logits: the output's last axis holds columns
     * [tp_vocab_start, tp_vocab_start + its extent) of tp_vocab; 0, 0 when whole */
    int64_t tp_vocab_start, tp_vocab;
} fr_block_desc;

/* Weight i of a block from a file: fr_st_bind, or fr_st_bind_slice for a
 * tensor-parallel slice (b->tp_slices[i].axis > 0). */
int fr_bind_weight(const fr_block_desc *b, int i, const fr_st *f, const char *prefix, const void **data,
                   fr_err *err);
/* Binds every weight of a block from a file: weights[i] = data of prefix + desc->weights[i].name.
 * A --tp block first checks this process's rank (fr_tp_check). */
int fr_bind_block(const fr_block_desc *b, const fr_st *f, const char *prefix,
                  const void **weights, fr_err *err);

/* ---- JSON (config.json, model.safetensors.index.json) ---------------------- */

typedef enum fr_json_type {
    FR_JSON_NULL, FR_JSON_BOOL, FR_JSON_NUM, FR_JSON_STR, FR_JSON_ARR, FR_JSON_OBJ
} fr_json_type;

/* A parsed JSON value: num for BOOL (0/1) and NUM, str for STR, n items for
 * ARR and OBJ (keys[i] names items[i] of an OBJ). */
typedef struct fr_json {
    fr_json_type type;
    double num;
    char *str;
    int n;
    char **keys;
    struct fr_json *items;
} fr_json;

/* Parses a whole file (RFC 8259; nesting at most 64 deep); FR_EIO when it
 * cannot be read, FR_EFORMAT naming the line and column of a syntax error. */
int fr_json_load(fr_json *j, const char *path, fr_err *err);
const fr_json *fr_json_get(const fr_json *obj, const char *key);   /* NULL: no such key or not an object */
void fr_json_free(fr_json *j);

/* ---- checkpoints as published: one file or shards ------------------------- */

/*
 * A checkpoint as Hugging Face publishes it: one .safetensors file, or a
 * model.safetensors.index.json whose "weight_map" names, for every tensor,
 * the file beside the index that holds it (model-00001-of-00004.safetensors
 * ...).  Each shard is opened (mapped) once.
 */
typedef struct fr_shards {
    int nfiles;
    fr_st *files;
    char **file_names;      /* as the index names them */
    int nmap;
    char **map_names;       /* the weight_map, sorted by tensor name */
    int *map_file;
    char *path;
} fr_shards;

int fr_shards_open(fr_shards *s, const char *path, fr_err *err);
void fr_shards_close(fr_shards *s);
/* The file that holds tensor `name` (the index's, or the one file); NULL when
 * the index does not list it (*err says so). */
const fr_st *fr_shards_file(const fr_shards *s, const char *name, fr_err *err);
/* fr_bind_block over the shards: weights[i] = prefix + desc->weights[i].name. */
int fr_shards_bind(const fr_shards *s, const fr_block_desc *b, const char *prefix, const void **weights,
                   fr_err *err);

/* ---- threads -------------------------------------------------------------- */

/* Thread count for kernels: fr_set_num_threads, else FUSE_NUM_THREADS, else 1. */
void fr_set_num_threads(int n);
int fr_get_num_threads(void);

/*
 * The persistent pool (pool.c): one per process, serving one call at a time.
 *
 * fr_pool_acquire(want) returns how many threads (1..want) the calling
 * thread's next fr_pool_run may use.  want > 1 takes the pool: it waits, in
 * order of arrival and asleep, while another call holds it, and starts
 * workers up to want - 1 the first time (fewer if the system refuses
 * threads).  want <= 1, or a call from inside a pool task, returns 1 and
 * takes nothing: such calls run on their own thread, at once.
 *
 * fr_pool_run(n, fn, ctx, scratch, stride) then runs fn(ctx, tid, n) on n
 * threads (at most what fr_pool_acquire returned; the caller is tid 0),
 * returns when all have returned, and gives the pool back.  Every
 * fr_pool_acquire is followed by exactly one fr_pool_run on the same
 * thread.  Inside fn, fr_barrier(n) separates phases (spin, then yield),
 * and fr_scratch(t) is thread t's scratch: scratch + t * stride (NULL when
 * scratch is NULL); the memory is the caller's, so callers never share it.
 *
 * fr_parallel(fn, ctx) is both for fr_pool_threads() threads, without
 * scratch.  Workers stay alive between calls, spinning briefly and then
 * sleeping, until fr_pool_shutdown (also run at exit).
 */
typedef void (*fr_task)(void *ctx, int tid, int nthreads);
int fr_pool_acquire(int want);
void fr_pool_run(int n, fr_task fn, void *ctx, void *scratch, size_t stride);
void fr_parallel(fr_task fn, void *ctx);
void fr_barrier(int nthreads);
void *fr_scratch(int tid);
int fr_pool_threads(void);      /* fr_get_num_threads() capped at the pool's 256 */
void fr_pool_shutdown(void);    /* joins the workers (waits for a call in flight) */
/* [begin, end) of tid's share of n items, balanced to within one item. */
void fr_split(int64_t n, int tid, int nthreads, int64_t *begin, int64_t *end);

/* ---- CPU features (cpu.c, amx.c) ------------------------------------------- */

/* What the CPU and the OS support (x86: cpuid + xgetbv; AArch64 Linux:
 * getauxval(AT_HWCAP)).  Multi-target blocks dispatch on these.  The AMX bits
 * count only once Linux has granted this process the tile data state
 * (fr_amx_enable, asked for during detection): a CPU with AMX under a kernel
 * that refuses it reports no AMX, so the dispatcher takes a variant without. */
enum {
    FR_CPU_AVX2 = 1u << 0,
    FR_CPU_FMA = 1u << 1,
    FR_CPU_AVX512F = 1u << 2,
    FR_CPU_AVX512BW = 1u << 3,
    FR_CPU_AVX512VL = 1u << 4,
    FR_CPU_NEON = 1u << 5,
    FR_CPU_AVX512DQ = 1u << 6,
    FR_CPU_F16C = 1u << 7,          /* vcvtph2ps / vcvtps2ph */
    FR_CPU_AVX512BF16 = 1u << 8,    /* vdpbf16ps, vcvtne2ps2bf16 */
    FR_CPU_AVX512VNNI = 1u << 9,    /* vpdpbusd on zmm (and on ymm with AVX512VL) */
    FR_CPU_AVXVNNI = 1u << 10,      /* vpdpbusd, VEX-encoded (256-bit, no AVX-512 needed) */
    FR_CPU_AVXVNNIINT8 = 1u << 11,  /* vpdpbssd: signed x signed bytes */
    FR_CPU_AVX512FP16 = 1u << 12,
    FR_CPU_AMX_TILE = 1u << 13,     /* tile registers, ldtilecfg (and the OS's permission) */
    FR_CPU_AMX_BF16 = 1u << 14,     /* tdpbf16ps */
    FR_CPU_AMX_INT8 = 1u << 15,     /* tdpbssd, tdpbusd, ... */
    FR_CPU_NEON_DOTPROD = 1u << 16  /* AArch64 sdot/udot (HWCAP_ASIMDDP) */
};
/* The detected features minus the masked ones.  The mask is fr_cpu_mask's
 * if a program set one, else the FUSEC_CPU_MASK environment variable (read
 * once): feature names separated by commas ("avx512f,avx2"; "avx512" means
 * the AVX-512 F, BW and VL bits, "amx" the three AMX bits, "all" every bit;
 * fr_cpu_feature_names spells each one) or a number (0x...). */
unsigned fr_cpu_features(void);
/* Hides `bits` from fr_cpu_features (for tests); 0 shows everything again. */
void fr_cpu_mask(unsigned bits);
/* The features as text, "avx2,fma,..." (or "none"), into buf; returns buf. */
const char *fr_cpu_feature_names(unsigned bits, char *buf, size_t size);
/* 0 when this CPU has every feature in `needed`; else FR_ECPU, with a last
 * error naming the missing features: "WHO: target TARGET needs avx512bw,
 * which this CPU lacks (it has avx2,fma)". */
int fr_cpu_check(const char *who, const char *target, unsigned needed);
/*
 * Asks Linux for this process's permission to use the AMX tile data state
 * (arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA), Linux 5.16 and
 * later), once per process; later calls return the first answer.  0 when
 * granted; FR_EINVAL with the kernel's reason in *err otherwise (no AMX in
 * this CPU or kernel, not Linux, or a signal stack too small for the tile
 * state).  Code that executes tile instructions must have had 0 from here:
 * without the permission the first tile instruction kills the process.
 */
int fr_amx_enable(fr_err *err);

/* ---- tensor parallelism (tp.c; docs/distributed.md) ------------------------ */

/*
 * The runtime knows no MPI: a communicator (libfusec_comm's fr_mpi_init, or
 * a program's own) registers itself here, and the all-reduce of a --tp block
 * calls it.  Without one the process is rank 0 of 1.
 */
typedef struct fr_comm_ops {
    int rank, size;
    /* buf[0..n) summed over the ranks, in place; 0, or an FR_ECOMM with *err set */
    int (*allreduce_sum)(float *buf, int64_t n, fr_err *err);
} fr_comm_ops;
void fr_comm_register(const fr_comm_ops *ops);   /* copied; NULL: single process again */
int fr_comm_rank(void);
int fr_comm_size(void);
/* 0 when this process is rank `tp_rank` of `tp_size`; else FR_ECOMM naming both */
int fr_tp_check(const char *block, int tp_size, int tp_rank, fr_err *err);
/* Sums buf over the ranks of a block compiled for tp_size ranks (generated
 * code calls it); FR_ECOMM, with fr_last_error saying why, on a rank count
 * other than tp_size or a failed exchange. */
int fr_allreduce_sum(float *buf, int64_t n, int tp_size);

/* ---- timers --------------------------------------------------------------- */

double fr_now(void); /* seconds, monotonic */

#ifdef __cplusplus
}
#endif
#endif /* FUSEC_RT_H */
