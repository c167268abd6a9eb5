/*
 * dtype.c - element types as safetensors spells them.
 *
 * One table, indexed by fr_dtype, so that the reader, the writer and error
 * messages agree on names and sizes.  The static assertion below catches an
 * enum value added to fusec_rt.h without a row here.
 */
#include "fusec_rt.h"

static const struct {
    const char *name;
    size_t size;
} dtypes[] = {
    [FR_F32] = {"F32", 4},  [FR_F64] = {"F64", 8},   [FR_I32] = {"I32", 4},
    [FR_I64] = {"I64", 8},  [FR_F16] = {"F16", 2},   [FR_BF16] = {"BF16", 2},
    [FR_U8] = {"U8", 1},    [FR_I8] = {"I8", 1},     [FR_BOOL] = {"BOOL", 1},
};

/* C99 has no static_assert: a negative array size fails the build instead. */
typedef char fr_dtype_table_matches_enum[(sizeof dtypes / sizeof dtypes[0] == FR_NDTYPES) ? 1 : -1];

const char *fr_dtype_name(fr_dtype t)
{
    if ((int)t < 0 || t >= FR_NDTYPES)
        return "?";
    return dtypes[t].name;
}

size_t fr_dtype_size(fr_dtype t)
{
    if ((int)t < 0 || t >= FR_NDTYPES)
        return 0;
    return dtypes[t].size;
}
