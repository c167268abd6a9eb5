/*
 * shards.c - checkpoints as Hugging Face publishes them, and the JSON they
 * come with.
 *
 * fr_json_load parses a whole JSON file into a tree (config.json, whose
 * numbers fusec reads at compile time; model.safetensors.index.json, whose
 * "weight_map" says which shard holds each tensor).  fr_shards opens one
 * .safetensors file, or every shard an index names, and binds a block's
 * weights from whichever file holds each.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fusec_rt.h"

#define JSON_MAX_DEPTH 64

typedef struct JP {
    const char *s, *end, *path;
    fr_err *err;
} JP;

static int jp_fail(JP *p, const char *at, const char *what)
{
    int line = 1, col = 1;
    for (const char *q = p->s; q < at && q < p->end; q++) {
        if (*q == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    return fr_seterr(p->err, FR_EFORMAT, "%s:%d:%d: %s", p->path, line, col, what);
}

static void jp_ws(JP *p, const char **c)
{
    while (*c < p->end && (**c == ' ' || **c == '\t' || **c == '\n' || **c == '\r'))
        (*c)++;
}

static int jp_value(JP *p, const char **c, fr_json *out, int depth);

static int jp_string(JP *p, const char **c, char **out)
{
    const char *q = *c + 1;
    size_t cap = 16, n = 0;
    char *buf = malloc(cap);
    if (!buf)
        return fr_seterr(p->err, FR_ENOMEM, "%s: out of memory", p->path);
    for (;;) {
        if (q >= p->end || (unsigned char)*q < 0x20) {
            free(buf);
            return jp_fail(p, q, "unterminated string");
        }
        char ch = *q++;
        if (ch == '"')
            break;
        unsigned cp = (unsigned char)ch;
        if (ch == '\\') {
            if (q >= p->end) {
                free(buf);
                return jp_fail(p, q, "unterminated string");
            }
            char e = *q++;
            const char *esc = strchr("\"\\/bfnrt", e);
            if (esc && e != 'u') {
                cp = (unsigned char)"\"\\/\b\f\n\r\t"[esc - "\"\\/bfnrt"];
            } else if (e == 'u' && p->end - q >= 4) {
                cp = 0;
                for (int i = 0; i < 4; i++, q++) {
                    char h = *q;
                    int v = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10
                          : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
                    if (v < 0) {
                        free(buf);
                        return jp_fail(p, q, "bad \\u escape");
                    }
                    cp = cp * 16 + (unsigned)v;
                }
            } else {
                free(buf);
                return jp_fail(p, q - 1, "bad escape in a string");
            }
        }
        if (n + 4 >= cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                return fr_seterr(p->err, FR_ENOMEM, "%s: out of memory", p->path);
            }
            buf = nb;
        }
        if (cp < 0x80 || ch != '\\') {  /* raw bytes as they are */
            buf[n++] = (char)cp;
        } else if (cp < 0x800) {
            buf[n++] = (char)(0xC0 | cp >> 6);
            buf[n++] = (char)(0x80 | (cp & 0x3F));
        } else {
            buf[n++] = (char)(0xE0 | cp >> 12);
            buf[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
            buf[n++] = (char)(0x80 | (cp & 0x3F));
        }
    }
    buf[n] = '\0';
    *out = buf;
    *c = q;
    return FR_OK;
}

static int jp_push(JP *p, fr_json *j, char *key, int *cap)
{
    if (j->n == *cap) {
        int nc = *cap ? 2 * *cap : 4;
        fr_json *it = realloc(j->items, sizeof *it * (size_t)nc);
        if (it)
            j->items = it;
        char **k = j->type == FR_JSON_OBJ ? realloc(j->keys, sizeof *k * (size_t)nc) : NULL;
        if (k)
            j->keys = k;
        if (!it || (j->type == FR_JSON_OBJ && !k)) {
            free(key);
            return fr_seterr(p->err, FR_ENOMEM, "%s: out of memory", p->path);
        }
        *cap = nc;
    }
    memset(&j->items[j->n], 0, sizeof j->items[j->n]);
    if (j->type == FR_JSON_OBJ)
        j->keys[j->n] = key;
    j->n++;
    return FR_OK;
}

static int jp_container(JP *p, const char **c, fr_json *out, int depth)
{
    char close = **c == '{' ? '}' : ']';
    int cap = 0, rc;
    out->type = close == '}' ? FR_JSON_OBJ : FR_JSON_ARR;
    if (depth >= JSON_MAX_DEPTH)
        return jp_fail(p, *c, "nested too deeply");
    (*c)++;
    jp_ws(p, c);
    if (*c < p->end && **c == close) {
        (*c)++;
        return FR_OK;
    }
    for (;;) {
        char *key = NULL;
        jp_ws(p, c);
        if (close == '}') {
            if (*c >= p->end || **c != '"')
                return jp_fail(p, *c, "expected a key string");
            if ((rc = jp_string(p, c, &key)) != FR_OK)
                return rc;
            jp_ws(p, c);
            if (*c >= p->end || **c != ':') {
                free(key);
                return jp_fail(p, *c, "expected ':'");
            }
            (*c)++;
        }
        if ((rc = jp_push(p, out, key, &cap)) != FR_OK)
            return rc;
        if ((rc = jp_value(p, c, &out->items[out->n - 1], depth + 1)) != FR_OK)
            return rc;
        jp_ws(p, c);
        if (*c < p->end && **c == ',') {
            (*c)++;
            continue;
        }
        if (*c < p->end && **c == close) {
            (*c)++;
            return FR_OK;
        }
        return jp_fail(p, *c, close == '}' ? "expected ',' or '}'" : "expected ',' or ']'");
    }
}

static int jp_value(JP *p, const char **c, fr_json *out, int depth)
{
    jp_ws(p, c);
    if (*c >= p->end)
        return jp_fail(p, *c, "unexpected end of the file");
    char ch = **c;
    if (ch == '{' || ch == '[')
        return jp_container(p, c, out, depth);
    if (ch == '"') {
        out->type = FR_JSON_STR;
        return jp_string(p, c, &out->str);
    }
    static const char *const words[] = {"true", "false", "null"};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(words[i]);
        if ((size_t)(p->end - *c) >= n && strncmp(*c, words[i], n) == 0) {
            out->type = i == 2 ? FR_JSON_NULL : FR_JSON_BOOL;
            out->num = i == 0;
            *c += n;
            return FR_OK;
        }
    }
    if (ch == '-' || (ch >= '0' && ch <= '9')) {
        char tmp[64];
        size_t n = 0;
        while (*c + n < p->end && n < sizeof tmp - 1 && strchr("+-0123456789.eE", (*c)[n]))
            n++;
        memcpy(tmp, *c, n);
        tmp[n] = '\0';
        char *e;
        out->type = FR_JSON_NUM;
        out->num = strtod(tmp, &e);
        if (*e || n == sizeof tmp - 1)
            return jp_fail(p, *c, "bad number");
        *c += n;
        return FR_OK;
    }
    return jp_fail(p, *c, "unexpected character");
}

int fr_json_load(fr_json *j, const char *path, fr_err *err)
{
    memset(j, 0, sizeof *j);
    FILE *f = fopen(path, "rb");
    if (!f)
        return fr_seterr(err, FR_EIO, "cannot open '%s': %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0, got;
    char *text = malloc(cap);
    while (text && (got = fread(text + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            char *t = cap < ((size_t)1 << 30) ? realloc(text, cap *= 2) : NULL;
            if (!t) {
                free(text);
                text = NULL;
            }
            text = t;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (!text)
        return fr_seterr(err, FR_ENOMEM, "'%s': out of memory (or larger than 1 GiB)", path);
    if (bad) {
        free(text);
        return fr_seterr(err, FR_EIO, "cannot read '%s'", path);
    }
    JP p = {text, text + n, path, err};
    const char *c = text;
    int rc = jp_value(&p, &c, j, 0);
    if (rc == FR_OK) {
        jp_ws(&p, &c);
        if (c < p.end)
            rc = jp_fail(&p, c, "text after the JSON value");
    }
    free(text);
    if (rc != FR_OK)
        fr_json_free(j);
    return rc;
}

const fr_json *fr_json_get(const fr_json *obj, const char *key)
{
    if (!obj || obj->type != FR_JSON_OBJ)
        return NULL;
    for (int i = obj->n - 1; i >= 0; i--)   /* a repeated key: the last, as Python's json */
        if (strcmp(obj->keys[i], key) == 0)
            return &obj->items[i];
    return NULL;
}

void fr_json_free(fr_json *j)
{
    if (!j)
        return;
    for (int i = 0; i < j->n; i++) {
        fr_json_free(&j->items[i]);
        if (j->keys)
            free(j->keys[i]);
    }
    free(j->items);
    free(j->keys);
    free(j->str);
    memset(j, 0, sizeof *j);
}

/* ---- shards ----------------------------------------------------------------- */

static int ends_with(const char *s, const char *tail)
{
    size_t a = strlen(s), b = strlen(tail);
    return a >= b && strcmp(s + a - b, tail) == 0;
}

static char *dup_str(const char *s)
{
    char *d = malloc(strlen(s) + 1);
    if (d)
        strcpy(d, s);
    return d;
}

typedef struct MapEntry {
    char *name;
    int file;
} MapEntry;

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const MapEntry *)a)->name, ((const MapEntry *)b)->name);
}

static int open_index(fr_shards *s, const char *path, fr_err *err)
{
    fr_json j;
    int rc = fr_json_load(&j, path, err);
    if (rc != FR_OK)
        return rc;
    const fr_json *map = fr_json_get(&j, "weight_map");
    if (!map || map->type != FR_JSON_OBJ || map->n == 0) {
        fr_json_free(&j);
        return fr_seterr(err, FR_EFORMAT, "'%s' has no \"weight_map\" object naming the shards", path);
    }
    const char *slash = strrchr(path, '/');
    size_t dirlen = slash ? (size_t)(slash - path + 1) : 0;
    MapEntry *m = calloc((size_t)map->n, sizeof *m);
    s->file_names = calloc((size_t)map->n, sizeof *s->file_names);
    s->files = calloc((size_t)map->n, sizeof *s->files);
    if (!m || !s->file_names || !s->files) {
        free(m);
        fr_json_free(&j);
        return fr_seterr(err, FR_ENOMEM, "'%s': out of memory", path);
    }
    rc = FR_OK;
    for (int i = 0; i < map->n && rc == FR_OK; i++) {
        const fr_json *v = &map->items[i];
        if (v->type != FR_JSON_STR || !*v->str || strchr(v->str, '/')) {
            rc = fr_seterr(err, FR_EFORMAT, "'%s': the weight_map entry of '%s' is not a file name beside the "
                           "index", path, map->keys[i]);
            break;
        }
        int f = 0;
        while (f < s->nfiles && strcmp(s->file_names[f], v->str) != 0)
            f++;
        if (f == s->nfiles) {
            char *full = malloc(dirlen + strlen(v->str) + 1);
            s->file_names[f] = dup_str(v->str);
            if (!full || !s->file_names[f]) {
                free(full);
                rc = fr_seterr(err, FR_ENOMEM, "'%s': out of memory", path);
                break;
            }
            memcpy(full, path, dirlen);
            strcpy(full + dirlen, v->str);
            rc = fr_st_open(&s->files[f], full, err);
            free(full);
            if (rc != FR_OK)
                break;
            s->nfiles++;
        }
        m[i].name = dup_str(map->keys[i]);
        m[i].file = f;
        s->nmap++;
        if (!m[i].name)
            rc = fr_seterr(err, FR_ENOMEM, "'%s': out of memory", path);
    }
    if (rc == FR_OK) {
        qsort(m, (size_t)s->nmap, sizeof *m, cmp_entry);
        s->map_names = calloc((size_t)s->nmap, sizeof *s->map_names);
        s->map_file = calloc((size_t)s->nmap, sizeof *s->map_file);
        if (!s->map_names || !s->map_file)
            rc = fr_seterr(err, FR_ENOMEM, "'%s': out of memory", path);
        for (int i = 0; rc == FR_OK && i < s->nmap; i++) {
            s->map_names[i] = m[i].name;
            s->map_file[i] = m[i].file;
            m[i].name = NULL;
        }
    }
    for (int i = 0; i < s->nmap; i++)
        free(m[i].name);
    if (rc != FR_OK || !s->map_names)
        s->nmap = 0;
    free(m);
    fr_json_free(&j);
    return rc;
}

int fr_shards_open(fr_shards *s, const char *path, fr_err *err)
{
    int rc;
    if (!s || !path)
        return fr_seterr(err, FR_EINVAL, "fr_shards_open: missing shards or path");
    memset(s, 0, sizeof *s);
    s->path = dup_str(path);
    if (!s->path)
        return fr_seterr(err, FR_ENOMEM, "'%s': out of memory", path);
    if (ends_with(path, ".json")) {
        rc = open_index(s, path, err);
    } else {
        s->files = calloc(1, sizeof *s->files);
        rc = s->files ? fr_st_open(&s->files[0], path, err) : fr_seterr(err, FR_ENOMEM, "out of memory");
        if (rc == FR_OK)
            s->nfiles = 1;
    }
    if (rc != FR_OK)
        fr_shards_close(s);
    return rc;
}

void fr_shards_close(fr_shards *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->nfiles; i++)
        fr_st_close(&s->files[i]);
    for (int i = 0; s->file_names && s->file_names[i] && i < s->nfiles + 1; i++)
        free(s->file_names[i]);
    for (int i = 0; i < s->nmap; i++)
        free(s->map_names[i]);
    free(s->files);
    free(s->file_names);
    free(s->map_names);
    free(s->map_file);
    free(s->path);
    memset(s, 0, sizeof *s);
}

const fr_st *fr_shards_file(const fr_shards *s, const char *name, fr_err *err)
{
    if (!s->map_names)
        return s->nfiles ? &s->files[0] : NULL;
    int lo = 0, hi = s->nmap - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2, c = strcmp(s->map_names[mid], name);
        if (c == 0)
            return &s->files[s->map_file[mid]];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    fr_seterr(err, FR_ENOTFOUND, "tensor '%s' is not in the weight_map of '%s'", name, s->path);
    return NULL;
}

int fr_shards_bind(const fr_shards *s, const fr_block_desc *b, const char *prefix, const void **weights,
                   fr_err *err)
{
    if (!s || !b || (b->nweights > 0 && !weights))
        return fr_seterr(err, FR_EINVAL, "fr_shards_bind: missing shards, block or weight array");
    for (int i = 0; i < b->nweights; i++)
        weights[i] = NULL;
    int rc0 = fr_tp_check(b->name, b->tp_size, b->tp_rank, err);
    if (rc0 != FR_OK)
        return rc0;
    for (int i = 0; i < b->nweights; i++) {
        const fr_tensor_desc *d = &b->weights[i];
        size_t lp = prefix ? strlen(prefix) : 0;
        char *full = malloc(lp + strlen(d->name) + 1);
        if (!full)
            return fr_seterr(err, FR_ENOMEM, "out of memory");
        memcpy(full, prefix ? prefix : "", lp);
        strcpy(full + lp, d->name);
        const fr_st *f = fr_shards_file(s, full, err);
        free(full);
        int rc = f ? fr_bind_weight(b, i, f, prefix, &weights[i], err)
                   : FR_ENOTFOUND;
        if (rc != FR_OK) {
            for (int k = 0; k < b->nweights; k++)
                weights[k] = NULL;
            return rc;
        }
    }
    return FR_OK;
}
