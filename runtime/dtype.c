/*
 * dtype.c - element types as safetensors spells them.
 *
 * One table, indexed by fr_dtype, so that the reader, the writer and error
 * messages agree on names and sizes.  The static assertion below catches an
 * enum value added to fusec_rt.h without a row here.
 *
 * Two rows are block types, not safetensors dtypes: Q8_0 and Q4_0 store a
 * row of n elements as ceil(n / 32) blocks of a float16 scale and 32
 * quantized values (docs/quantization.md).  A file holds them as U8 tensors
 * with a "__metadata__" entry naming the type and the logical shape; the
 * reader presents them with their block type and logical shape.
 */
#include "fusec_rt.h"

static const struct {
    const char *name;
    size_t size;        /* bytes per element; 0 for block types */
    int block;          /* elements per block */
    size_t block_bytes; /* bytes per block */
} dtypes[] = {
    [FR_F32] = {"F32", 4, 1, 4},    [FR_F64] = {"F64", 8, 1, 8},   [FR_I32] = {"I32", 4, 1, 4},
    [FR_I64] = {"I64", 8, 1, 8},    [FR_F16] = {"F16", 2, 1, 2},   [FR_BF16] = {"BF16", 2, 1, 2},
    [FR_U8] = {"U8", 1, 1, 1},      [FR_I8] = {"I8", 1, 1, 1},     [FR_BOOL] = {"BOOL", 1, 1, 1},
    /* an f16 scale d and 32 int8 q: x = d * q (llama.cpp's block_q8_0) */
    [FR_Q8_0] = {"Q8_0", 0, 32, 34},
    /* an f16 scale d and 16 bytes of 4-bit q, elements 0..15 in the low
     * nibbles, 16..31 in the high ones: x = d * (q - 8) (block_q4_0) */
    [FR_Q4_0] = {"Q4_0", 0, 32, 18},
};

/* C99 has no static_assert: a negative array size fails the build instead. */
typedef char fr_dtype_table_matches_enum[(sizeof dtypes / sizeof dtypes[0] == FR_NDTYPES) ? 1 : -1];

static int known(fr_dtype t)
{
    return (int)t >= 0 && t < FR_NDTYPES;
}

const char *fr_dtype_name(fr_dtype t)
{
    return known(t) ? dtypes[t].name : "?";
}

size_t fr_dtype_size(fr_dtype t)
{
    return known(t) ? dtypes[t].size : 0;
}

int fr_dtype_block(fr_dtype t)
{
    return known(t) ? dtypes[t].block : 0;
}

size_t fr_dtype_block_bytes(fr_dtype t)
{
    return known(t) ? dtypes[t].block_bytes : 0;
}

int fr_dtype_nbytes(fr_dtype t, int rank, const int64_t *shape, uint64_t *nbytes)
{
    uint64_t rows = 1, last, bytes;
    int i;

    if (!known(t) || rank < 0 || rank > FR_MAX_RANK || (rank > 0 && !shape) || !nbytes)
        return -1;
    for (i = 0; i < rank; i++)
        if (shape[i] < 0)
            return -1;
    for (i = 0; i < rank; i++)
        if (shape[i] == 0) {
            *nbytes = 0;
            return 0;
        }
    if (dtypes[t].block > 1 && rank == 0)
        return -1; /* a block type needs a row */
    for (i = 0; i + 1 < rank; i++) {
        if (rows > UINT64_MAX / (uint64_t)shape[i])
            return -1;
        rows *= (uint64_t)shape[i];
    }
    last = rank ? (uint64_t)shape[rank - 1] : 1;
    /* bytes of one row: whole blocks, the last one padded */
    bytes = (last / (uint64_t)dtypes[t].block + (last % (uint64_t)dtypes[t].block != 0)) * dtypes[t].block_bytes;
    if (last / (uint64_t)dtypes[t].block > UINT64_MAX / dtypes[t].block_bytes / 2)
        return -1;
    if (bytes && rows > UINT64_MAX / bytes)
        return -1;
    *nbytes = rows * bytes;
    return 0;
}
