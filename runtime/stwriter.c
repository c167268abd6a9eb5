/*
 * stwriter.c - a small safetensors writer.
 *
 * Used by the check harness to hand outputs back to fusec, and by tests.
 * The output is deterministic, so identical tensors give identical bytes:
 * header keys are sorted by name, with no whitespace, and the header is
 * padded with spaces to a multiple of 8 bytes as the reference
 * implementation pads it, so the data area starts 8-byte aligned.  The data
 * is contiguous, laid out by element size (largest first) and then by name,
 * which keeps every tensor aligned to its element size inside the file, so a
 * reader can map it without copies.
 *
 * A "__metadata__" object is written when there are entries: the caller's
 * (fr_stw_metadata) and one per quantized tensor, "fusec.quant.NAME" =
 * "Q8_0[N,K]" (docs/quantization.md), whose bytes are written as a U8
 * tensor of shape [N, blocks * block bytes].  Keys are sorted too.
 *
 * The file appears atomically: the bytes go to PATH.tmp.XXXXXX in the same
 * directory, then rename() replaces PATH.  On any failure the temporary file
 * is removed and an existing file at PATH is left as it was.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fusec_rt.h"

typedef struct WEntry {
    char *name;
    fr_dtype dtype;
    int rank;
    int64_t shape[FR_MAX_RANK];
    const void *data; /* the caller's, until fr_stw_write */
    size_t nbytes;
    uint64_t begin;   /* offset in the data area, set while writing */
} WEntry;

typedef struct WMeta {
    char *key, *value;
} WMeta;

struct fr_st_writer {
    WEntry *e;
    int n, cap;
    WMeta *m;
    int nm, mcap;
};

/* A growable byte buffer for the header; a failed append sets oom. */
typedef struct WBuf {
    char *p;
    size_t len, cap;
    int oom;
} WBuf;

static void wb_put(WBuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (n > SIZE_MAX - b->len - 1) {
        b->oom = 1;
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t ncap = b->cap ? b->cap : 256;
        char *np;
        while (ncap < b->len + n + 1)
            ncap = ncap > SIZE_MAX / 2 ? b->len + n + 1 : ncap * 2;
        np = realloc(b->p, ncap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = ncap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void wb_str(WBuf *b, const char *s)
{
    wb_put(b, s, strlen(s));
}

static void wb_u64(WBuf *b, uint64_t v)
{
    char num[24];
    int len = snprintf(num, sizeof num, "%llu", (unsigned long long)v);

    if (len < 0)
        b->oom = 1;
    else
        wb_put(b, num, (size_t)len);
}

/* A JSON string: quotes, backslashes and control characters escaped; UTF-8
 * (checked by fr_stw_add) passes through. */
static void wb_json_string(WBuf *b, const char *s)
{
    wb_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            wb_put(b, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", (unsigned)c);
            wb_put(b, esc, 6);
        } else
            wb_put(b, s, 1);
    }
    wb_put(b, "\"", 1);
}

/* Whether s is valid UTF-8 (RFC 3629): the reader rejects anything else, so
 * the writer refuses to produce it.  The same rules as safetensors.c. */
static int valid_utf8(const char *str)
{
    const unsigned char *p = (const unsigned char *)str;

    while (*p) {
        unsigned char c = *p, lo = 0x80, hi = 0xbf;
        int len, i;
        if (c < 0x80) {
            p++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf)
            len = 2;
        else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            lo = c == 0xe0 ? 0xa0 : 0x80;
            hi = c == 0xed ? 0x9f : 0xbf;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            lo = c == 0xf0 ? 0x90 : 0x80;
            hi = c == 0xf4 ? 0x8f : 0xbf;
        } else
            return 0;
        if (p[1] < lo || p[1] > hi)
            return 0;
        for (i = 2; i < len; i++)
            if (p[i] < 0x80 || p[i] > 0xbf)
                return 0;
        p += len;
    }
    return 1;
}

fr_st_writer *fr_stw_new(void)
{
    return calloc(1, sizeof(fr_st_writer));
}

void fr_stw_free(fr_st_writer *w)
{
    int i;

    if (!w)
        return;
    for (i = 0; i < w->n; i++)
        free(w->e[i].name);
    for (i = 0; i < w->nm; i++) {
        free(w->m[i].key);
        free(w->m[i].value);
    }
    free(w->e);
    free(w->m);
    free(w);
}

int fr_stw_add(fr_st_writer *w, const char *name, fr_dtype dtype, int rank,
               const int64_t *shape, const void *data, fr_err *err)
{
    uint64_t bytes;
    WEntry *e;
    size_t nl;
    int i, zero = 0;

    if (!w || !name)
        return fr_seterr(err, FR_EINVAL, "fr_stw_add: no writer or no name");
    if (strcmp(name, "__metadata__") == 0 || !valid_utf8(name))
        return fr_seterr(err, FR_EINVAL, "fr_stw_add: '%s' is not a valid tensor name", name);
    if ((int)dtype < 0 || dtype >= FR_NDTYPES)
        return fr_seterr(err, FR_EINVAL, "fr_stw_add: tensor '%s': bad dtype %d", name, (int)dtype);
    if (rank < 0 || rank > FR_MAX_RANK || (rank > 0 && !shape))
        return fr_seterr(err, FR_EINVAL, "fr_stw_add: tensor '%s': rank %d outside [0, %d] or no shape",
                         name, rank, FR_MAX_RANK);
    for (i = 0; i < rank; i++) {
        if (shape[i] < 0)
            return fr_seterr(err, FR_EINVAL, "fr_stw_add: tensor '%s': negative dimension %lld",
                             name, (long long)shape[i]);
        zero |= shape[i] == 0;
    }
    if (fr_dtype_block(dtype) > 1 && rank == 0)
        return fr_seterr(err, FR_EINVAL, "fr_stw_add: tensor '%s': a %s tensor needs at least one dimension",
                         name, fr_dtype_name(dtype));
    if (fr_dtype_nbytes(dtype, rank, shape, &bytes) < 0 || bytes > (uint64_t)INT64_MAX)
        return fr_seterr(err, FR_EINVAL, "fr_stw_add: tensor '%s': too many elements", name);
    (void)zero;
    if (bytes > SIZE_MAX)
        return fr_seterr(err, FR_EINVAL, "fr_stw_add: tensor '%s': too large for this host", name);
    if (bytes > 0 && !data)
        return fr_seterr(err, FR_EINVAL, "fr_stw_add: tensor '%s': no data", name);
    if (w->n == w->cap) {
        int ncap = w->cap ? w->cap * 2 : 16;
        WEntry *ne;
        if (w->cap > (1 << 28) || (size_t)ncap > SIZE_MAX / sizeof *ne)
            return fr_seterr(err, FR_ENOMEM, "fr_stw_add: too many tensors");
        ne = realloc(w->e, (size_t)ncap * sizeof *ne);
        if (!ne)
            return fr_seterr(err, FR_ENOMEM, "fr_stw_add: out of memory");
        w->e = ne;
        w->cap = ncap;
    }
    nl = strlen(name);
    e = &w->e[w->n];
    memset(e, 0, sizeof *e);
    e->name = malloc(nl + 1);
    if (!e->name)
        return fr_seterr(err, FR_ENOMEM, "fr_stw_add: out of memory");
    memcpy(e->name, name, nl + 1);
    e->dtype = dtype;
    e->rank = rank;
    for (i = 0; i < rank; i++)
        e->shape[i] = shape[i];
    e->data = data;
    e->nbytes = (size_t)bytes;
    w->n++;
    return FR_OK;
}

/* A copy of s, or NULL. */
static char *dup_str(const char *s)
{
    size_t n = strlen(s);
    char *d = malloc(n + 1);

    if (d)
        memcpy(d, s, n + 1);
    return d;
}

int fr_stw_metadata(fr_st_writer *w, const char *key, const char *value, fr_err *err)
{
    WMeta *m;

    if (!w || !key || !value)
        return fr_seterr(err, FR_EINVAL, "fr_stw_metadata: no writer, key or value");
    if (!valid_utf8(key) || !valid_utf8(value))
        return fr_seterr(err, FR_EINVAL, "fr_stw_metadata: key '%s' or its value is not valid UTF-8", key);
    if (strncmp(key, FR_QUANT_KEY, strlen(FR_QUANT_KEY)) == 0)
        return fr_seterr(err, FR_EINVAL, "fr_stw_metadata: keys starting with '" FR_QUANT_KEY
                                         "' are written for quantized tensors ('%s')", key);
    if (w->nm == w->mcap) {
        int ncap = w->mcap ? w->mcap * 2 : 8;
        WMeta *nm;
        if (w->mcap > (1 << 28) || (size_t)ncap > SIZE_MAX / sizeof *nm)
            return fr_seterr(err, FR_ENOMEM, "fr_stw_metadata: too many entries");
        nm = realloc(w->m, (size_t)ncap * sizeof *nm);
        if (!nm)
            return fr_seterr(err, FR_ENOMEM, "fr_stw_metadata: out of memory");
        w->m = nm;
        w->mcap = ncap;
    }
    m = &w->m[w->nm];
    m->key = dup_str(key);
    m->value = dup_str(value);
    if (!m->key || !m->value) {
        free(m->key);
        free(m->value);
        return fr_seterr(err, FR_ENOMEM, "fr_stw_metadata: out of memory");
    }
    w->nm++;
    return FR_OK;
}

static int cmp_by_name(const void *a, const void *b)
{
    return strcmp((*(const WEntry *const *)a)->name, (*(const WEntry *const *)b)->name);
}

/* Larger elements first so that each tensor starts aligned to its size. */
static int cmp_by_layout(const void *a, const void *b)
{
    const WEntry *x = *(const WEntry *const *)a, *y = *(const WEntry *const *)b;
    size_t sx = fr_dtype_size(x->dtype), sy = fr_dtype_size(y->dtype);

    if (sx != sy)
        return sx > sy ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* The stored (U8) last dim of a quantized tensor: its blocks' bytes. */
static uint64_t stored_last(const WEntry *e)
{
    uint64_t k = (uint64_t)e->shape[e->rank - 1], blk = (uint64_t)fr_dtype_block(e->dtype);

    return (k / blk + (k % blk != 0)) * fr_dtype_block_bytes(e->dtype);
}

/* One metadata entry of the header: the caller's, or a quantized tensor's. */
typedef struct HMeta {
    const char *key;     /* without FR_QUANT_KEY for a tensor's */
    const WMeta *m;      /* NULL for a tensor's */
    const WEntry *e;
} HMeta;

static int cmp_hmeta(const void *a, const void *b)
{
    const HMeta *x = a, *y = b;
    size_t pl = strlen(FR_QUANT_KEY);
    /* tensor keys compare as FR_QUANT_KEY + name */
    if (!x->m != !y->m) {
        const char *plain = x->m ? x->key : y->key, *name = x->m ? y->key : x->key;
        int c = strncmp(plain, FR_QUANT_KEY, pl);
        if (c == 0)
            c = strcmp(plain + pl, name);
        return x->m ? c : -c;
    }
    return strcmp(x->key, y->key);
}

static void wb_meta(WBuf *b, const fr_st_writer *w, WEntry **byname, int n)
{
    HMeta *h;
    int i, k, nh = 0;

    for (i = 0; i < n; i++)
        nh += fr_dtype_block(byname[i]->dtype) > 1;
    if (nh + w->nm == 0)
        return;
    h = malloc((size_t)(nh + w->nm) * sizeof *h);
    if (!h) {
        b->oom = 1;
        return;
    }
    nh = 0;
    for (i = 0; i < w->nm; i++)
        h[nh++] = (HMeta){w->m[i].key, &w->m[i], NULL};
    for (i = 0; i < n; i++)
        if (fr_dtype_block(byname[i]->dtype) > 1)
            h[nh++] = (HMeta){byname[i]->name, NULL, byname[i]};
    qsort(h, (size_t)nh, sizeof *h, cmp_hmeta);
    wb_str(b, "\"__metadata__\":{");
    for (i = 0; i < nh; i++) {
        if (i)
            wb_str(b, ",");
        if (h[i].m) {
            wb_json_string(b, h[i].key);
            wb_str(b, ":");
            wb_json_string(b, h[i].m->value);
            continue;
        }
        {
            /* "fusec.quant.NAME":"Q8_0[N,K]" */
            WBuf key = {NULL, 0, 0, 0}, val = {NULL, 0, 0, 0};
            const WEntry *e = h[i].e;
            wb_str(&key, FR_QUANT_KEY);
            wb_str(&key, e->name);
            wb_str(&val, fr_dtype_name(e->dtype));
            wb_str(&val, "[");
            for (k = 0; k < e->rank; k++) {
                if (k)
                    wb_str(&val, ",");
                wb_u64(&val, (uint64_t)e->shape[k]);
            }
            wb_str(&val, "]");
            if (key.oom || val.oom)
                b->oom = 1;
            else {
                wb_json_string(b, key.p);
                wb_str(b, ":");
                wb_json_string(b, val.p);
            }
            free(key.p);
            free(val.p);
        }
    }
    wb_str(b, "},");
    free(h);
}

/* '{' "__metadata__" ':' '{' ... '}' ','? ( name ':' '{' "dtype" "shape" "data_offsets" '}' ),* '}'
 * then spaces */
static int build_header(const fr_st_writer *w, WEntry **byname, int n, WBuf *b)
{
    int i, k;

    wb_str(b, "{");
    wb_meta(b, w, byname, n);
    if (n == 0 && b->len > 1 && b->p[b->len - 1] == ',')
        b->p[--b->len] = '\0';
    for (i = 0; i < n; i++) {
        const WEntry *e = byname[i];
        int quant = fr_dtype_block(e->dtype) > 1;
        if (i)
            wb_str(b, ",");
        wb_json_string(b, e->name);
        wb_str(b, ":{\"dtype\":\"");
        wb_str(b, fr_dtype_name(quant ? FR_U8 : e->dtype));
        wb_str(b, "\",\"shape\":[");
        for (k = 0; k < e->rank; k++) {
            if (k)
                wb_str(b, ",");
            wb_u64(b, quant && k == e->rank - 1 ? stored_last(e) : (uint64_t)e->shape[k]);
        }
        wb_str(b, "],\"data_offsets\":[");
        wb_u64(b, e->begin);
        wb_str(b, ",");
        wb_u64(b, e->begin + e->nbytes);
        wb_str(b, "]}");
    }
    wb_str(b, "}");
    while (!b->oom && b->len % 8 != 0)
        wb_str(b, " ");
    return b->oom ? -1 : 0;
}

static int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;

    while (n > 0) {
        size_t chunk = n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n;
        ssize_t k = write(fd, c, chunk);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        c += k;
        n -= (size_t)k;
    }
    return 0;
}

/* The mode a plain fopen would give (0666 less the umask).  umask can only
 * be read by setting it; the restrictive 077 in between means a file some
 * other thread creates in that instant is at worst too private. */
static mode_t default_mode(void)
{
    mode_t m = umask(077);

    umask(m);
    return (mode_t)(0666 & ~m);
}

/* Writes the length, the header and the data to fd. */
static int write_body(int fd, const WBuf *hdr, WEntry **bylayout, int n)
{
    unsigned char len8[8];
    uint64_t hl = hdr->len;
    int i;

    for (i = 0; i < 8; i++)
        len8[i] = (unsigned char)(hl >> (8 * i));
    if (write_all(fd, len8, 8) < 0 || write_all(fd, hdr->p, hdr->len) < 0)
        return -1;
    for (i = 0; i < n; i++)
        if (bylayout[i]->nbytes > 0 && write_all(fd, bylayout[i]->data, bylayout[i]->nbytes) < 0)
            return -1;
    return 0;
}

int fr_stw_write(fr_st_writer *w, const char *path, fr_err *err)
{
    WEntry **byname = NULL, **bylayout = NULL;
    WBuf hdr = {NULL, 0, 0, 0};
    char *tmp = NULL;
    uint64_t at = 0;
    size_t plen;
    int i, fd = -1, created = 0, rc = FR_OK;

    if (!w || !path)
        return fr_seterr(err, FR_EINVAL, "fr_stw_write: no writer or no path");
    byname = malloc(((size_t)w->n + 1) * sizeof *byname);
    bylayout = malloc(((size_t)w->n + 1) * sizeof *bylayout);
    plen = strlen(path);
    tmp = plen < SIZE_MAX - 16 ? malloc(plen + 16) : NULL;
    if (!byname || !bylayout || !tmp) {
        rc = fr_seterr(err, FR_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    for (i = 0; i < w->n; i++)
        byname[i] = bylayout[i] = &w->e[i];
    qsort(byname, (size_t)w->n, sizeof *byname, cmp_by_name);
    for (i = 1; i < w->n; i++)
        if (strcmp(byname[i - 1]->name, byname[i]->name) == 0) {
            rc = fr_seterr(err, FR_EINVAL, "%s: tensor '%s' added twice", path, byname[i]->name);
            goto done;
        }
    qsort(bylayout, (size_t)w->n, sizeof *bylayout, cmp_by_layout);
    for (i = 0; i < w->n; i++) {
        if (bylayout[i]->nbytes > (uint64_t)INT64_MAX - at) {
            rc = fr_seterr(err, FR_EINVAL, "%s: tensors too large in total", path);
            goto done;
        }
        bylayout[i]->begin = at;
        at += bylayout[i]->nbytes;
    }
    for (i = 0; i < w->nm; i++) {
        int j;
        for (j = 0; j < i; j++)
            if (strcmp(w->m[i].key, w->m[j].key) == 0) {
                rc = fr_seterr(err, FR_EINVAL, "%s: metadata key '%s' added twice", path, w->m[i].key);
                goto done;
            }
    }
    if (build_header(w, byname, w->n, &hdr) < 0) {
        rc = fr_seterr(err, FR_ENOMEM, "%s: out of memory building the header", path);
        goto done;
    }

    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp.XXXXXX", 12);
    fd = mkstemp(tmp);
    if (fd < 0) {
        rc = fr_seterr(err, FR_EIO, "%s: cannot create a temporary file: %s", path, strerror(errno));
        goto done;
    }
    created = 1;
    if (fchmod(fd, default_mode()) != 0 || write_body(fd, &hdr, bylayout, w->n) < 0 || fsync(fd) != 0) {
        rc = fr_seterr(err, FR_EIO, "%s: cannot write %s: %s", path, tmp, strerror(errno));
        goto done;
    }
    i = close(fd);
    fd = -1;
    if (i != 0) {
        rc = fr_seterr(err, FR_EIO, "%s: cannot write %s: %s", path, tmp, strerror(errno));
        goto done;
    }
    if (rename(tmp, path) != 0) {
        rc = fr_seterr(err, FR_EIO, "%s: cannot rename %s into place: %s", path, tmp, strerror(errno));
        goto done;
    }
    created = 0; /* it is path now */
done:
    /* On this path an error is already reported; a close or unlink that
     * fails as well has nothing to add, so their results are ignored. */
    if (fd >= 0)
        (void)close(fd);
    if (created)
        (void)unlink(tmp);
    free(tmp);
    free(hdr.p);
    free(byname);
    free(bylayout);
    return rc;
}
