/*
 * safetensors.c - a validating, mmap-based safetensors reader and binding of
 * tensors by name.
 *
 * The file format: an 8-byte little-endian header length N, N bytes of JSON
 * mapping tensor names to {"dtype", "shape", "data_offsets"} (plus an optional
 * "__metadata__" object of strings), then the data area, which the offsets
 * index.  Checkpoints come from elsewhere, so every field is checked before a
 * kernel trusts it: a defect is FR_EFORMAT with a message that names the
 * file, the tensor and the problem, and no input makes the reader crash or
 * read outside the mapping.
 *
 * The header is read in two passes.  The first is a generic strict JSON
 * parser (RFC 8259, UTF-8 checked, nesting bounded so that "[[[[..." cannot
 * exhaust the stack); it guarantees that a syntax error is reported as such,
 * wherever it is.  The second walks the now well-formed text against the
 * safetensors schema, decoding names into one buffer owned by the fr_st.
 * Neither pass builds a tree: besides the tensor table, memory is two
 * buffers as long as the header (the names, and scratch for keys).
 *
 * Data stays in the read-only mapping, so opening a multi-gigabyte checkpoint
 * costs only the header.  A tensor whose data the file places at an address
 * that is not a multiple of its element size is copied once, at open, into an
 * aligned buffer the fr_st owns, so every fr_tensor.data may be dereferenced
 * as its element type.
 */
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fusec_rt.h"

/* The reference implementation's limit: no real header comes near it, and it
 * bounds what a hostile length field can make the parser walk. */
#define ST_MAX_HEADER 100000000u
/* The schema needs 3 levels; metadata is strings only.  64 leaves room for
 * whatever a tool might nest in a header the reader would reject anyway. */
#define JSON_MAX_DEPTH 64

/* ======================================================================
 * Pass 1: strict JSON
 * ====================================================================== */

typedef struct Json {
    const char *s; /* the header text; not NUL-terminated */
    size_t n, pos;
    char msg[200]; /* the first error, without the file name */
} Json;

typedef struct JsonNum {
    size_t start, len;
    int neg;       /* a leading '-' */
    int fraction;  /* a '.' or an exponent: not an integer literal */
} JsonNum;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static int js_fail(Json *j, const char *fmt, ...)
{
    va_list ap;
    size_t len;

    va_start(ap, fmt);
    if (vsnprintf(j->msg, sizeof j->msg, fmt, ap) < 0)
        j->msg[0] = '\0';
    va_end(ap);
    len = strlen(j->msg);
    if (len < sizeof j->msg)
        snprintf(j->msg + len, sizeof j->msg - len, " at byte %zu of the header", j->pos);
    return -1;
}

static int js_peek(const Json *j)
{
    return j->pos < j->n ? (unsigned char)j->s[j->pos] : -1;
}

static void js_ws(Json *j)
{
    while (j->pos < j->n) {
        char c = j->s[j->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        j->pos++;
    }
}

/* Describes the byte at the cursor for a message: 'x', byte 0x01 or the end. */
static const char *js_what(const Json *j, char *buf, size_t cap)
{
    int c = js_peek(j);

    if (c < 0)
        snprintf(buf, cap, "the end of the header");
    else if (c >= 0x20 && c < 0x7f)
        snprintf(buf, cap, "'%c'", c);
    else
        snprintf(buf, cap, "byte 0x%02x", (unsigned)c);
    return buf;
}

static int js_expect(Json *j, char c)
{
    char what[32];

    js_ws(j);
    if (js_peek(j) != (unsigned char)c)
        return js_fail(j, "expected '%c' but found %s", c, js_what(j, what, sizeof what));
    j->pos++;
    return 0;
}

/* The length of the valid UTF-8 sequence at p (RFC 3629: no overlong forms,
 * no surrogates, nothing above U+10FFFF), or 0. */
static size_t utf8_len(const unsigned char *p, size_t avail)
{
    unsigned char c = p[0];
    size_t len, i;
    unsigned char lo = 0x80, hi = 0xbf;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0)
            lo = 0xa0;
        if (c == 0xed)
            hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0)
            lo = 0x90;
        if (c == 0xf4)
            hi = 0x8f;
    } else
        return 0;
    if (avail < len || p[1] < lo || p[1] > hi)
        return 0;
    for (i = 2; i < len; i++)
        if (p[i] < 0x80 || p[i] > 0xbf)
            return 0;
    return len;
}

static int js_hex4(Json *j, unsigned *out)
{
    unsigned v = 0;
    int i;

    if (j->n - j->pos < 4)
        return js_fail(j, "truncated \\u escape");
    for (i = 0; i < 4; i++) {
        char c = j->s[j->pos + i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return js_fail(j, "bad hex digit in \\u escape");
    }
    j->pos += 4;
    *out = v;
    return 0;
}

static size_t put_utf8(char *out, unsigned cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/*
 * string = '"' ( unescaped UTF-8 >= 0x20 | '\' ( ["\/bfnrt] | 'u' hex4 ) )* '"'
 *
 * A surrogate pair of \u escapes becomes one code point; a lone surrogate is
 * an error because it has no UTF-8 form.  When out is not NULL the decoded
 * bytes go there: decoding never lengthens a string, so room for the encoded
 * length plus a NUL always suffices.  *outlen is the decoded length.
 */
static int js_string(Json *j, char *out, size_t *outlen)
{
    size_t len = 0;
    char buf[4];

    if (js_expect(j, '"') < 0)
        return -1;
    for (;;) {
        int c = js_peek(j);
        size_t k, m;
        if (c < 0)
            return js_fail(j, "unterminated string");
        if (c == '"') {
            j->pos++;
            break;
        }
        if (c < 0x20)
            return js_fail(j, "control character 0x%02x in a string", (unsigned)c);
        if (c == '\\') {
            unsigned cp;
            j->pos++;
            c = js_peek(j);
            if (c < 0)
                return js_fail(j, "unterminated string");
            j->pos++;
            switch (c) {
            case '"': cp = '"'; break;
            case '\\': cp = '\\'; break;
            case '/': cp = '/'; break;
            case 'b': cp = '\b'; break;
            case 'f': cp = '\f'; break;
            case 'n': cp = '\n'; break;
            case 'r': cp = '\r'; break;
            case 't': cp = '\t'; break;
            case 'u':
                if (js_hex4(j, &cp) < 0)
                    return -1;
                if (cp >= 0xdc00 && cp <= 0xdfff)
                    return js_fail(j, "lone low surrogate \\u%04x", cp);
                if (cp >= 0xd800 && cp <= 0xdbff) {
                    unsigned lo;
                    if (j->n - j->pos < 2 || j->s[j->pos] != '\\' || j->s[j->pos + 1] != 'u')
                        return js_fail(j, "high surrogate \\u%04x not followed by a low one", cp);
                    j->pos += 2;
                    if (js_hex4(j, &lo) < 0)
                        return -1;
                    if (lo < 0xdc00 || lo > 0xdfff)
                        return js_fail(j, "high surrogate \\u%04x not followed by a low one", cp);
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                }
                break;
            default:
                j->pos--;
                if (c >= 0x20 && c < 0x7f)
                    return js_fail(j, "bad escape '\\%c'", c);
                return js_fail(j, "bad escape: byte 0x%02x after '\\'", (unsigned)c);
            }
            m = put_utf8(buf, cp);
            if (out)
                memcpy(out + len, buf, m);
            len += m;
            continue;
        }
        k = utf8_len((const unsigned char *)j->s + j->pos, j->n - j->pos);
        if (k == 0)
            return js_fail(j, "invalid UTF-8 in a string");
        if (out)
            memcpy(out + len, j->s + j->pos, k);
        len += k;
        j->pos += k;
    }
    if (out)
        out[len] = '\0';
    if (outlen)
        *outlen = len;
    return 0;
}

static int js_digits(Json *j)
{
    size_t start = j->pos;

    while (j->pos < j->n && j->s[j->pos] >= '0' && j->s[j->pos] <= '9')
        j->pos++;
    return j->pos > start;
}

/* number = '-'? ( '0' | [1-9][0-9]* ) ( '.' [0-9]+ )? ( [eE] [+-]? [0-9]+ )? */
static int js_number(Json *j, JsonNum *num)
{
    JsonNum nm;

    js_ws(j);
    memset(&nm, 0, sizeof nm);
    nm.start = j->pos;
    if (js_peek(j) == '-') {
        nm.neg = 1;
        j->pos++;
    }
    if (js_peek(j) == '0') {
        j->pos++;
        if (js_peek(j) >= '0' && js_peek(j) <= '9')
            return js_fail(j, "number with a leading zero");
    } else if (!js_digits(j))
        return js_fail(j, "malformed number");
    if (js_peek(j) == '.') {
        j->pos++;
        nm.fraction = 1;
        if (!js_digits(j))
            return js_fail(j, "malformed number: no digits after '.'");
    }
    if (js_peek(j) == 'e' || js_peek(j) == 'E') {
        j->pos++;
        nm.fraction = 1;
        if (js_peek(j) == '+' || js_peek(j) == '-')
            j->pos++;
        if (!js_digits(j))
            return js_fail(j, "malformed number: no digits in the exponent");
    }
    nm.len = j->pos - nm.start;
    if (num)
        *num = nm;
    return 0;
}

static int js_value(Json *j, int depth);

/* object = '{' ( string ':' value ( ',' string ':' value )* )? '}' */
static int js_object(Json *j, int depth)
{
    if (js_expect(j, '{') < 0)
        return -1;
    js_ws(j);
    if (js_peek(j) == '}') {
        j->pos++;
        return 0;
    }
    for (;;) {
        char what[32];
        js_ws(j);
        if (js_peek(j) != '"')
            return js_fail(j, "expected a string key but found %s", js_what(j, what, sizeof what));
        if (js_string(j, NULL, NULL) < 0 || js_expect(j, ':') < 0 || js_value(j, depth + 1) < 0)
            return -1;
        js_ws(j);
        if (js_peek(j) == ',') {
            j->pos++;
            continue;
        }
        if (js_peek(j) == '}') {
            j->pos++;
            return 0;
        }
        return js_fail(j, "expected ',' or '}' but found %s", js_what(j, what, sizeof what));
    }
}

/* array = '[' ( value ( ',' value )* )? ']' */
static int js_array(Json *j, int depth)
{
    if (js_expect(j, '[') < 0)
        return -1;
    js_ws(j);
    if (js_peek(j) == ']') {
        j->pos++;
        return 0;
    }
    for (;;) {
        char what[32];
        if (js_value(j, depth + 1) < 0)
            return -1;
        js_ws(j);
        if (js_peek(j) == ',') {
            j->pos++;
            continue;
        }
        if (js_peek(j) == ']') {
            j->pos++;
            return 0;
        }
        return js_fail(j, "expected ',' or ']' but found %s", js_what(j, what, sizeof what));
    }
}

static int js_literal(Json *j, const char *word)
{
    size_t len = strlen(word);

    if (j->n - j->pos < len || memcmp(j->s + j->pos, word, len) != 0)
        return js_fail(j, "invalid literal (expected '%s')", word);
    j->pos += len;
    return 0;
}

/* value = object | array | string | number | 'true' | 'false' | 'null' */
static int js_value(Json *j, int depth)
{
    char what[32];
    int c;

    js_ws(j);
    c = js_peek(j);
    if ((c == '{' || c == '[') && depth >= JSON_MAX_DEPTH)
        return js_fail(j, "nesting deeper than %d levels", JSON_MAX_DEPTH);
    switch (c) {
    case '{': return js_object(j, depth);
    case '[': return js_array(j, depth);
    case '"': return js_string(j, NULL, NULL);
    case 't': return js_literal(j, "true");
    case 'f': return js_literal(j, "false");
    case 'n': return js_literal(j, "null");
    default:
        if (c == '-' || (c >= '0' && c <= '9'))
            return js_number(j, NULL);
        return js_fail(j, "expected a value but found %s", js_what(j, what, sizeof what));
    }
}

/* document = ws value ws */
static int js_document(Json *j)
{
    char what[32];

    js_ws(j);
    if (j->pos == j->n)
        return js_fail(j, "empty header");
    if (js_value(j, 0) < 0)
        return -1;
    js_ws(j);
    if (j->pos != j->n)
        return js_fail(j, "trailing characters (%s) after the JSON value", js_what(j, what, sizeof what));
    return 0;
}

/* ======================================================================
 * Pass 2: the safetensors schema
 * ====================================================================== */

typedef struct Reader {
    const char *path;
    Json j;             /* positioned in text that pass 1 accepted */
    char *scratch;      /* decoded keys and dtype names; as long as the header */
    fr_st *f;
    int cap;            /* of f->tensors */
    size_t names_used;  /* bytes of f->names in use */
    const char *data;   /* the data area */
    uint64_t data_size;
    fr_err *err;
} Reader;

/* Formats "[2, 3]" for messages; long shapes are truncated, not overrun. */
static const char *fmt_shape(char *buf, size_t cap, int rank, const int64_t *shape)
{
    size_t len = 0;
    int i;

    buf[0] = '\0';
    for (i = 0; i <= rank && len < cap; i++) {
        int w;
        if (i == rank)
            w = snprintf(buf + len, cap - len, "]");
        else
            w = snprintf(buf + len, cap - len, "%s%lld", i ? ", " : "[", (long long)shape[i]);
        if (w < 0)
            break;
        len += (size_t)w;
    }
    return buf;
}

/* Tensor names come from the file and may be of any length: messages cut
 * them at MSG_NAME_MAX bytes (with "..."), so that the problem written after
 * the name still fits in fr_err's message. */
#define MSG_NAME_MAX 128
#define MSG_NAME(s) (int)(strlen(s) > MSG_NAME_MAX ? MSG_NAME_MAX : strlen(s)), (s), \
                    (strlen(s) > MSG_NAME_MAX ? "..." : "")

/* Sets a FR_EFORMAT "FILE: tensor 'NAME': PROBLEM" message (no tensor part
 * when name is NULL). */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int st_fail(Reader *r, const char *name, const char *fmt, ...)
{
    char problem[384];
    va_list ap;

    va_start(ap, fmt);
    if (vsnprintf(problem, sizeof problem, fmt, ap) < 0)
        problem[0] = '\0';
    va_end(ap);
    if (name)
        return fr_seterr(r->err, FR_EFORMAT, "%s: tensor '%.*s%s': %s", r->path, MSG_NAME(name), problem);
    return fr_seterr(r->err, FR_EFORMAT, "%s: %s", r->path, problem);
}

/* Pass 1 accepted the text, so a JSON error here is a bug in this file;
 * it is still reported rather than trusted away. */
static int st_syntax(Reader *r)
{
    return st_fail(r, NULL, "header is not valid JSON: %s", r->j.msg);
}

/* Reads a non-negative integer literal (what = "shape entry", ...). */
static int st_uint(Reader *r, const char *name, const char *what, uint64_t *out)
{
    JsonNum num;
    uint64_t v = 0;
    size_t i;
    int c;
    const char *text;
    int shown;

    js_ws(&r->j);
    c = js_peek(&r->j);
    if (c != '-' && (c < '0' || c > '9'))
        return st_fail(r, name, "%s is not a number", what);
    if (js_number(&r->j, &num) < 0)
        return st_syntax(r);
    text = r->j.s + num.start;
    shown = num.len > 40 ? 40 : (int)num.len;
    if (num.neg && !num.fraction)
        return st_fail(r, name, "%s %.*s is negative", what, shown, text);
    if (num.fraction)
        return st_fail(r, name, "%s %.*s is not an integer", what, shown, text);
    for (i = 0; i < num.len; i++) {
        unsigned d = (unsigned)(text[i] - '0');
        if (v > ((uint64_t)INT64_MAX - d) / 10)
            return st_fail(r, name, "%s %.*s is too large", what, shown, text);
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static const char *const unsupported_dtypes[] = {
    "I16", "U16", "U32", "U64", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4", "C64",
};

static int st_dtype(Reader *r, const char *name, fr_dtype *out)
{
    size_t len, i;
    char *s = r->scratch;

    js_ws(&r->j);
    if (js_peek(&r->j) != '"')
        return st_fail(r, name, "\"dtype\" is not a string");
    if (js_string(&r->j, s, &len) < 0)
        return st_syntax(r);
    for (i = 0; i < FR_NDTYPES; i++)
        if (strcmp(s, fr_dtype_name((fr_dtype)i)) == 0 && strlen(s) == len) {
            if (fr_dtype_block((fr_dtype)i) != 1)
                return st_fail(r, name, "dtype '%s' is not a safetensors dtype: a quantized tensor is stored "
                                        "as U8 with a \"" FR_QUANT_KEY "NAME\" metadata entry", s);
            *out = (fr_dtype)i;
            return 0;
        }
    for (i = 0; i < sizeof unsupported_dtypes / sizeof unsupported_dtypes[0]; i++)
        if (strcmp(s, unsupported_dtypes[i]) == 0)
            return st_fail(r, name, "unknown dtype '%s' (safetensors has it; fusec does not support it)", s);
    return st_fail(r, name, "unknown dtype '%.64s'", s);
}

/* shape = '[' ( uint ( ',' uint )* )? ']' with at most FR_MAX_RANK entries */
static int st_shape(Reader *r, const char *name, fr_tensor *t)
{
    int rc;

    js_ws(&r->j);
    if (js_peek(&r->j) != '[')
        return st_fail(r, name, "\"shape\" is not an array");
    r->j.pos++;
    t->rank = 0;
    js_ws(&r->j);
    if (js_peek(&r->j) == ']') {
        r->j.pos++;
        return 0;
    }
    for (;;) {
        uint64_t v;
        if (t->rank == FR_MAX_RANK)
            return st_fail(r, name, "shape has more than %d dimensions (FR_MAX_RANK)", FR_MAX_RANK);
        if ((rc = st_uint(r, name, "shape entry", &v)) < 0)
            return rc;
        t->shape[t->rank++] = (int64_t)v;
        js_ws(&r->j);
        if (js_peek(&r->j) == ',') {
            r->j.pos++;
            continue;
        }
        if (js_expect(&r->j, ']') < 0)
            return st_syntax(r);
        return 0;
    }
}

/* data_offsets = '[' uint ',' uint ']' */
static int st_offsets(Reader *r, const char *name, uint64_t off[2])
{
    int k, rc;

    js_ws(&r->j);
    if (js_peek(&r->j) != '[')
        return st_fail(r, name, "\"data_offsets\" is not an array");
    r->j.pos++;
    for (k = 0; k < 2; k++) {
        js_ws(&r->j);
        if (js_peek(&r->j) == ']')
            return st_fail(r, name, "\"data_offsets\" must hold exactly 2 numbers");
        if ((rc = st_uint(r, name, "data_offsets entry", &off[k])) < 0)
            return rc;
        js_ws(&r->j);
        if (js_peek(&r->j) != (k == 0 ? ',' : ']'))
            return st_fail(r, name, "\"data_offsets\" must hold exactly 2 numbers");
        r->j.pos++;
    }
    return 0;
}

/*
 * Checks what the three fields say together: the shape's byte count, the
 * offsets' order, their place in the data area, and that the two agree.
 */
static int st_check_entry(Reader *r, const char *name, fr_tensor *t, const uint64_t off[2])
{
    char shp[160];
    uint64_t bytes = fr_dtype_size(t->dtype);
    int i, zero = 0;

    for (i = 0; i < t->rank; i++)
        zero |= t->shape[i] == 0;
    if (zero)
        bytes = 0;
    for (i = 0; i < t->rank && !zero; i++) {
        uint64_t d = (uint64_t)t->shape[i];
        if (bytes > UINT64_MAX / d)
            return st_fail(r, name, "shape %s of %s overflows a 64-bit byte count",
                           fmt_shape(shp, sizeof shp, t->rank, t->shape), fr_dtype_name(t->dtype));
        bytes *= d;
    }
    if (off[0] > off[1])
        return st_fail(r, name, "data_offsets [%llu, %llu] are reversed",
                       (unsigned long long)off[0], (unsigned long long)off[1]);
    if (off[1] > r->data_size)
        return st_fail(r, name, "data_offsets [%llu, %llu] end past the data area (%llu bytes)",
                       (unsigned long long)off[0], (unsigned long long)off[1],
                       (unsigned long long)r->data_size);
    if (bytes != off[1] - off[0])
        return st_fail(r, name, "shape %s of %s needs %llu bytes but data_offsets [%llu, %llu] hold %llu (size mismatch)",
                       fmt_shape(shp, sizeof shp, t->rank, t->shape), fr_dtype_name(t->dtype),
                       (unsigned long long)bytes, (unsigned long long)off[0],
                       (unsigned long long)off[1], (unsigned long long)(off[1] - off[0]));
    t->data = r->data + off[0];
    t->nbytes = (size_t)bytes;
    return 0;
}

/* entry = '{' member ( ',' member )* '}'
 * member = '"dtype"' ':' string | '"shape"' ':' shape | '"data_offsets"' ':' offsets */
static int st_entry(Reader *r, fr_tensor *t)
{
    const char *name = t->name;
    uint64_t off[2] = {0, 0};
    int seen_dtype = 0, seen_shape = 0, seen_off = 0, rc;
    size_t klen;

    js_ws(&r->j);
    if (js_peek(&r->j) != '{')
        return st_fail(r, name, "entry is not a JSON object");
    r->j.pos++;
    js_ws(&r->j);
    if (js_peek(&r->j) == '}')
        r->j.pos++;
    else
        for (;;) {
            int *seen;
            if (js_string(&r->j, r->scratch, &klen) < 0 || js_expect(&r->j, ':') < 0)
                return st_syntax(r);
            if (strcmp(r->scratch, "dtype") == 0 && klen == 5)
                seen = &seen_dtype;
            else if (strcmp(r->scratch, "shape") == 0 && klen == 5)
                seen = &seen_shape;
            else if (strcmp(r->scratch, "data_offsets") == 0 && klen == 12)
                seen = &seen_off;
            else
                return st_fail(r, name, "unknown key '%.64s' in the entry", r->scratch);
            if (*seen)
                return st_fail(r, name, "duplicate key '%s' in the entry", r->scratch);
            *seen = 1;
            if (seen == &seen_dtype && (rc = st_dtype(r, name, &t->dtype)) < 0)
                return rc;
            if (seen == &seen_shape && (rc = st_shape(r, name, t)) < 0)
                return rc;
            if (seen == &seen_off && (rc = st_offsets(r, name, off)) < 0)
                return rc;
            js_ws(&r->j);
            if (js_peek(&r->j) == ',') {
                r->j.pos++;
                continue;
            }
            if (js_expect(&r->j, '}') < 0)
                return st_syntax(r);
            break;
        }
    if (!seen_dtype)
        return st_fail(r, name, "missing \"dtype\"");
    if (!seen_shape)
        return st_fail(r, name, "missing \"shape\"");
    if (!seen_off)
        return st_fail(r, name, "missing \"data_offsets\"");
    return st_check_entry(r, name, t, off);
}

/* metadata = '{' ( string ':' string ( ',' string ':' string )* )? '}'
 * kept as its raw JSON text and as decoded entries (into f->names, after the
 * tensor names read so far: decoding never lengthens a string, so the header
 * length bounds everything decoded from it). */
static int st_metadata(Reader *r)
{
    fr_st *f = r->f;
    size_t start, len, klen, vlen;
    int cap = 0;

    if (f->metadata_json)
        return st_fail(r, NULL, "duplicate '__metadata__'");
    js_ws(&r->j);
    if (js_peek(&r->j) != '{')
        return st_fail(r, NULL, "'__metadata__' is not an object");
    start = r->j.pos;
    r->j.pos++;
    js_ws(&r->j);
    if (js_peek(&r->j) == '}')
        r->j.pos++;
    else
        for (;;) {
            char *key = f->names + r->names_used, *value;
            fr_meta *m;
            if (js_string(&r->j, key, &klen) < 0 || js_expect(&r->j, ':') < 0)
                return st_syntax(r);
            if (strlen(key) != klen)
                return st_fail(r, NULL, "'__metadata__' key contains a NUL character (\\u0000)");
            js_ws(&r->j);
            if (js_peek(&r->j) != '"')
                return st_fail(r, NULL, "'__metadata__' value of key '%.64s' is not a string", key);
            value = key + klen + 1;
            if (js_string(&r->j, value, &vlen) < 0)
                return st_syntax(r);
            if (strlen(value) != vlen)
                return st_fail(r, NULL, "'__metadata__' value of key '%.64s' contains a NUL character", key);
            r->names_used += klen + vlen + 2;
            if (f->nmeta == cap) {
                fr_meta *nm;
                int ncap = cap ? cap * 2 : 8;
                if (cap > (1 << 28) || (size_t)ncap > SIZE_MAX / sizeof *nm)
                    return fr_seterr(r->err, FR_ENOMEM, "%s: too many metadata entries", r->path);
                nm = realloc(f->meta, (size_t)ncap * sizeof *nm);
                if (!nm)
                    return fr_seterr(r->err, FR_ENOMEM, "%s: out of memory for the metadata", r->path);
                f->meta = nm;
                cap = ncap;
            }
            m = &f->meta[f->nmeta++];
            m->key = key;
            m->value = value;
            js_ws(&r->j);
            if (js_peek(&r->j) == ',') {
                r->j.pos++;
                continue;
            }
            if (js_expect(&r->j, '}') < 0)
                return st_syntax(r);
            break;
        }
    len = r->j.pos - start;
    f->metadata_json = malloc(len + 1);
    if (!f->metadata_json)
        return fr_seterr(r->err, FR_ENOMEM, "%s: out of memory for the metadata", r->path);
    memcpy(f->metadata_json, r->j.s + start, len);
    f->metadata_json[len] = '\0';
    return 0;
}

static fr_tensor *st_new_tensor(Reader *r)
{
    fr_st *f = r->f;

    if (f->ntensors == r->cap) {
        int ncap = r->cap ? r->cap * 2 : 16;
        fr_tensor *nt;
        if (r->cap > (1 << 28) || (size_t)ncap > SIZE_MAX / sizeof *nt)
            return NULL;
        nt = realloc(f->tensors, (size_t)ncap * sizeof *nt);
        if (!nt)
            return NULL;
        f->tensors = nt;
        r->cap = ncap;
    }
    memset(&f->tensors[f->ntensors], 0, sizeof f->tensors[0]);
    return &f->tensors[f->ntensors++];
}

/* header = '{' ( string ':' ( entry | metadata ) ( ',' ... )* )? '}' */
static int st_header(Reader *r)
{
    fr_st *f = r->f;
    int rc;

    js_ws(&r->j);
    if (js_peek(&r->j) != '{')
        return st_fail(r, NULL, "header is not a JSON object");
    r->j.pos++;
    js_ws(&r->j);
    if (js_peek(&r->j) == '}')
        return 0;
    for (;;) {
        char *name = f->names + r->names_used;
        size_t len;
        if (js_string(&r->j, name, &len) < 0 || js_expect(&r->j, ':') < 0)
            return st_syntax(r);
        if (strcmp(name, "__metadata__") == 0 && len == 12) {
            if ((rc = st_metadata(r)) < 0)
                return rc;
        } else {
            fr_tensor *t;
            if (strlen(name) != len)
                return st_fail(r, name, "tensor name contains a NUL character (\\u0000)");
            t = st_new_tensor(r);
            if (!t)
                return fr_seterr(r->err, FR_ENOMEM, "%s: out of memory for the tensor table", r->path);
            t->name = name;
            r->names_used += len + 1;
            if ((rc = st_entry(r, t)) < 0)
                return rc;
        }
        js_ws(&r->j);
        if (js_peek(&r->j) == ',') {
            r->j.pos++;
            continue;
        }
        if (js_expect(&r->j, '}') < 0)
            return st_syntax(r);
        return 0;
    }
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(((const fr_tensor *)a)->name, ((const fr_tensor *)b)->name);
}

static int cmp_data(const void *a, const void *b)
{
    const char *x = (*(const fr_tensor *const *)a)->data;
    const char *y = (*(const fr_tensor *const *)b)->data;

    return x < y ? -1 : x > y;
}

/* Two tensors may share no byte.  Empty tensors occupy nothing and may sit
 * anywhere; gaps between tensors are allowed. */
static int st_check_overlaps(Reader *r)
{
    fr_st *f = r->f;
    const fr_tensor **byaddr;
    const fr_tensor *last = NULL; /* the tensor reaching furthest so far */
    int i, n = 0, rc = 0;

    if (f->ntensors < 2)
        return 0;
    byaddr = malloc((size_t)f->ntensors * sizeof *byaddr);
    if (!byaddr)
        return fr_seterr(r->err, FR_ENOMEM, "%s: out of memory", r->path);
    for (i = 0; i < f->ntensors; i++)
        if (f->tensors[i].nbytes > 0)
            byaddr[n++] = &f->tensors[i];
    qsort(byaddr, (size_t)n, sizeof *byaddr, cmp_data);
    for (i = 0; i < n && rc == 0; i++) {
        const fr_tensor *t = byaddr[i];
        const char *tb = t->data;
        if (last && tb < (const char *)last->data + last->nbytes) {
            unsigned long long lb = (unsigned long long)((const char *)last->data - r->data);
            unsigned long long b = (unsigned long long)(tb - r->data);
            rc = fr_seterr(r->err, FR_EFORMAT,
                           "%s: tensors '%.*s%s' and '%.*s%s' overlap: data_offsets [%llu, %llu] and [%llu, %llu]",
                           r->path, MSG_NAME(last->name), MSG_NAME(t->name), lb, lb + last->nbytes, b,
                           b + t->nbytes);
        }
        if (!last || tb + t->nbytes > (const char *)last->data + last->nbytes)
            last = t;
    }
    free(byaddr);
    return rc;
}

/*
 * Gives every tensor a pointer it may dereference as its element type.
 * Empty tensors point at the (page-aligned) start of the mapping; tensors the
 * file places at a misaligned address get a copy in one owned buffer.
 */
static int st_align(Reader *r)
{
    fr_st *f = r->f;
    size_t total = 0, at = 0;
    int i;

    for (i = 0; i < f->ntensors; i++) {
        fr_tensor *t = &f->tensors[i];
        size_t need;
        if (t->nbytes == 0) {
            t->data = f->map;
            continue;
        }
        if ((uintptr_t)t->data % fr_dtype_size(t->dtype) == 0)
            continue;
        need = (t->nbytes + (FR_ALIGN - 1)) & ~(size_t)(FR_ALIGN - 1);
        if (need < t->nbytes || total > SIZE_MAX - need)
            return fr_seterr(r->err, FR_ENOMEM, "%s: misaligned tensors too large to copy", r->path);
        total += need;
    }
    if (total == 0)
        return 0;
    f->owned = fr_alloc(total);
    if (!f->owned)
        return fr_seterr(r->err, FR_ENOMEM, "%s: out of memory copying misaligned tensors (%zu bytes)",
                         r->path, total);
    for (i = 0; i < f->ntensors; i++) {
        fr_tensor *t = &f->tensors[i];
        char *dst = (char *)f->owned + at;
        if (t->nbytes == 0 || (uintptr_t)t->data % fr_dtype_size(t->dtype) == 0)
            continue;
        memcpy(dst, t->data, t->nbytes);
        t->data = dst;
        at += (t->nbytes + (FR_ALIGN - 1)) & ~(size_t)(FR_ALIGN - 1);
    }
    return 0;
}

/* Keys of '__metadata__' must be distinct (a JSON object with a key twice
 * means whatever the last reader decided). */
static int cmp_meta_key(const void *a, const void *b)
{
    return strcmp((*(const fr_meta *const *)a)->key, (*(const fr_meta *const *)b)->key);
}

static int st_check_meta_keys(Reader *r)
{
    fr_st *f = r->f;
    const fr_meta **by;
    int i, rc = 0;

    if (f->nmeta < 2)
        return 0;
    by = malloc((size_t)f->nmeta * sizeof *by);
    if (!by)
        return fr_seterr(r->err, FR_ENOMEM, "%s: out of memory", r->path);
    for (i = 0; i < f->nmeta; i++)
        by[i] = &f->meta[i];
    qsort(by, (size_t)f->nmeta, sizeof *by, cmp_meta_key);
    for (i = 1; i < f->nmeta && rc == 0; i++)
        if (strcmp(by[i - 1]->key, by[i]->key) == 0)
            rc = st_fail(r, NULL, "duplicate '__metadata__' key '%.*s%s'", MSG_NAME(by[i]->key));
    free(by);
    return rc;
}

static fr_tensor *find_mut(fr_st *f, const char *name)
{
    int lo = 0, hi = f->ntensors - 1;

    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2, c = strcmp(name, f->tensors[mid].name);
        if (c == 0)
            return &f->tensors[mid];
        if (c < 0)
            hi = mid - 1;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* value = TYPE '[' dim ( ',' dim )* ']', spaces allowed between the parts;
 * TYPE a block type (Q8_0, Q4_0), each dim a decimal number. */
static int parse_quant(Reader *r, const char *name, const char *v, fr_dtype *dt, int *rank, int64_t *shape)
{
    const char *p = v;
    size_t n;
    int i;

    while (*p == ' ')
        p++;
    n = strcspn(p, " [");
    *dt = FR_NDTYPES;
    for (i = 0; i < FR_NDTYPES; i++)
        if (fr_dtype_block((fr_dtype)i) > 1 && strlen(fr_dtype_name((fr_dtype)i)) == n &&
            strncmp(p, fr_dtype_name((fr_dtype)i), n) == 0)
            *dt = (fr_dtype)i;
    if (*dt == FR_NDTYPES)
        return st_fail(r, name, "unknown quantized type '%.*s' in '__metadata__' (Q8_0 and Q4_0 are known)",
                       (int)(n > 32 ? 32 : n), p);
    p += n;
    while (*p == ' ')
        p++;
    if (*p++ != '[')
        return st_fail(r, name, "quantized type '%.64s' in '__metadata__' is not TYPE[dims]", v);
    *rank = 0;
    for (;;) {
        int64_t d = 0;
        while (*p == ' ')
            p++;
        if (*p < '0' || *p > '9')
            return st_fail(r, name, "quantized shape in '%.64s' is not a list of whole numbers", v);
        for (; *p >= '0' && *p <= '9'; p++) {
            if (d > (INT64_MAX - (*p - '0')) / 10)
                return st_fail(r, name, "quantized shape in '%.64s' has a dimension that is too large", v);
            d = d * 10 + (*p - '0');
        }
        if (*rank == FR_MAX_RANK)
            return st_fail(r, name, "quantized shape in '%.64s' has more than %d dimensions", v, FR_MAX_RANK);
        shape[(*rank)++] = d;
        while (*p == ' ')
            p++;
        if (*p == ',') {
            p++;
            continue;
        }
        if (*p++ != ']')
            return st_fail(r, name, "quantized shape in '%.64s' is not a list of whole numbers", v);
        break;
    }
    while (*p == ' ')
        p++;
    if (*p)
        return st_fail(r, name, "trailing characters after the quantized shape in '%.64s'", v);
    return 0;
}

/* Every block's float16 scale must be finite, and the padding of the last
 * block of every row (a row length that is not a multiple of the block)
 * must encode zeros, so that kernels may run over whole blocks: q = 0 for
 * Q8_0, nibble 8 (value 0) for Q4_0. */
static int st_check_blocks(Reader *r, const fr_tensor *t, fr_dtype dt, int64_t rows, int64_t k)
{
    int64_t blk = fr_dtype_block(dt), nb = (k + blk - 1) / blk, used = k % blk, i, c;
    size_t bb = fr_dtype_block_bytes(dt), rowb = (size_t)nb * bb;
    const unsigned char *p = t->data;

    /* every scale a finite float16: no quantizer makes inf or NaN */
    for (i = 0; i < rows; i++)
        for (c = 0; c < nb; c++) {
            const unsigned char *s = p + (size_t)i * rowb + (size_t)c * bb;
            if ((s[1] & 0x7c) == 0x7c)
                return st_fail(r, t->name, "%s row %lld block %lld has a scale that is not finite (f16 bits "
                                           "0x%02x%02x)", fr_dtype_name(dt), (long long)i, (long long)c, s[1], s[0]);
        }
    if (used == 0)
        return 0;
    for (i = 0; i < rows; i++) {
        const unsigned char *b = p + (size_t)i * rowb + (size_t)(nb - 1) * bb + 2;
        int64_t j;
        for (j = used; j < blk; j++) {
            int q = dt == FR_Q8_0 ? b[j] : j < 16 ? (b[j] & 15) - 8 : (b[j - 16] >> 4) - 8;
            if (q != 0)
                return st_fail(r, t->name, "%s row %lld has a non-zero padding element %lld (a row of %lld "
                                           "elements pads its last block with zeros)",
                               fr_dtype_name(dt), (long long)i, (long long)j, (long long)k);
        }
    }
    return 0;
}

/* Applies the FR_QUANT_KEY entries: each names a U8 tensor whose bytes are
 * the blocks of a logical shape, which it then takes. */
static int st_quant(Reader *r)
{
    fr_st *f = r->f;
    size_t pl = strlen(FR_QUANT_KEY);
    int i, k, rc;

    for (i = 0; i < f->nmeta; i++) {
        const char *key = f->meta[i].key, *tname = key + pl;
        char shp[160], have[160], want[160];
        int64_t shape[FR_MAX_RANK], rows = 1, stored[FR_MAX_RANK];
        uint64_t bytes;
        fr_tensor *t;
        fr_dtype dt = FR_U8;
        int rank = 0;
        if (strncmp(key, FR_QUANT_KEY, pl) != 0)
            continue;
        t = find_mut(f, tname);
        if (!t)
            return st_fail(r, NULL, "'__metadata__' entry '%.*s%s' names no tensor of the file", MSG_NAME(key));
        if ((rc = parse_quant(r, tname, f->meta[i].value, &dt, &rank, shape)) < 0)
            return rc;
        if (t->dtype != FR_U8)
            return st_fail(r, tname, "is %s, but a quantized tensor is stored as U8", fr_dtype_name(t->dtype));
        if (rank < 1 || fr_dtype_nbytes(dt, rank, shape, &bytes) < 0)
            return st_fail(r, tname, "quantized shape %s of %s is empty or too large",
                           fmt_shape(shp, sizeof shp, rank, shape), fr_dtype_name(dt));
        for (k = 0; k < rank; k++)
            stored[k] = shape[k];
        stored[rank - 1] = shape[rank - 1] == 0 ? 0 : (int64_t)fr_dtype_block_bytes(dt) *
                           ((shape[rank - 1] + fr_dtype_block(dt) - 1) / fr_dtype_block(dt));
        for (k = 0; k < rank && t->rank == rank; k++)
            if (t->shape[k] != stored[k])
                break;
        if (t->rank != rank || k < rank)
            return st_fail(r, tname, "%s of shape %s is stored as U8 %s, but its blocks need U8 %s",
                           fr_dtype_name(dt), fmt_shape(shp, sizeof shp, rank, shape),
                           fmt_shape(have, sizeof have, t->rank, t->shape),
                           fmt_shape(want, sizeof want, rank, stored));
        if (bytes != t->nbytes)
            return st_fail(r, tname, "%s needs %llu bytes, the tensor holds %zu", fr_dtype_name(dt),
                           (unsigned long long)bytes, t->nbytes);
        for (k = 0; k + 1 < rank; k++)
            rows *= shape[k];
        if (bytes && (rc = st_check_blocks(r, t, dt, rows, shape[rank - 1])) < 0)
            return rc;
        t->dtype = dt;
        for (k = 0; k < rank; k++)
            t->shape[k] = shape[k];
    }
    return 0;
}

static int host_is_little_endian(void)
{
    uint16_t one = 1;
    unsigned char c;

    memcpy(&c, &one, 1);
    return c == 1;
}

/* Maps the whole file read-only; f->map and f->size on success. */
static int st_map(fr_st *f, const char *path, fr_err *err)
{
    struct stat sb;
    int fd, rc = FR_OK;
    void *m;

    /* O_NONBLOCK: a FIFO with no writer would block open() forever; it is
     * refused below as not a regular file.  (mmap ignores the flag.) */
    fd = open(path, O_RDONLY | O_NONBLOCK);
    if (fd < 0)
        return fr_seterr(err, FR_EIO, "%s: cannot open: %s", path, strerror(errno));
    if (fstat(fd, &sb) != 0)
        rc = fr_seterr(err, FR_EIO, "%s: cannot stat: %s", path, strerror(errno));
    else if (!S_ISREG(sb.st_mode))
        rc = fr_seterr(err, FR_EIO, "%s: not a regular file%s", path,
                       S_ISFIFO(sb.st_mode) ? " (a FIFO)" : S_ISDIR(sb.st_mode) ? " (a directory)" : "");
    else if (sb.st_size < 8)
        rc = fr_seterr(err, FR_EFORMAT, "%s: file is %lld bytes, too short for the 8-byte header length",
                       path, (long long)sb.st_size);
    else if ((uint64_t)sb.st_size > (uint64_t)SIZE_MAX)
        rc = fr_seterr(err, FR_EIO, "%s: file too large to map", path);
    else {
        m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED)
            rc = fr_seterr(err, FR_EIO, "%s: cannot map: %s", path, strerror(errno));
        else {
            f->map = m;
            f->size = (size_t)sb.st_size;
        }
    }
    if (close(fd) != 0 && rc == FR_OK)
        rc = fr_seterr(err, FR_EIO, "%s: cannot close: %s", path, strerror(errno));
    return rc;
}

static int st_open(fr_st *f, const char *path, fr_err *err)
{
    const unsigned char *p;
    uint64_t hlen = 0;
    Reader r;
    int i, rc;

    if (!host_is_little_endian())
        return fr_seterr(err, FR_EINVAL, "%s: safetensors data is little-endian; this host is not", path);
    f->path = malloc(strlen(path) + 1);
    if (!f->path)
        return fr_seterr(err, FR_ENOMEM, "%s: out of memory", path);
    memcpy(f->path, path, strlen(path) + 1);
    rc = st_map(f, path, err);
    if (rc != FR_OK)
        return rc;
    p = f->map;
    for (i = 7; i >= 0; i--)
        hlen = hlen << 8 | p[i];
    if (hlen > f->size - 8)
        return fr_seterr(err, FR_EFORMAT, "%s: header length %llu exceeds the file size (%zu bytes)",
                         path, (unsigned long long)hlen, f->size);
    if (hlen > ST_MAX_HEADER)
        return fr_seterr(err, FR_EFORMAT, "%s: header length %llu exceeds the limit of %u bytes",
                         path, (unsigned long long)hlen, ST_MAX_HEADER);

    memset(&r, 0, sizeof r);
    r.path = path;
    r.f = f;
    r.err = err;
    r.j.s = (const char *)p + 8;
    r.j.n = (size_t)hlen;
    r.data = (const char *)p + 8 + hlen;
    r.data_size = f->size - 8 - hlen;
    if (js_document(&r.j) < 0)
        return st_fail(&r, NULL, "header is not valid JSON: %s", r.j.msg);
    r.j.pos = 0;
    f->names = malloc((size_t)hlen + 1);
    r.scratch = malloc((size_t)hlen + 1);
    if (!f->names || !r.scratch) {
        free(r.scratch);
        return fr_seterr(err, FR_ENOMEM, "%s: out of memory for a %llu-byte header", path,
                         (unsigned long long)hlen);
    }
    rc = st_header(&r);
    free(r.scratch);
    if (rc < 0)
        return rc;
    if (f->ntensors > 0)
        qsort(f->tensors, (size_t)f->ntensors, sizeof f->tensors[0], cmp_name);
    for (i = 1; i < f->ntensors; i++)
        if (strcmp(f->tensors[i - 1].name, f->tensors[i].name) == 0)
            return st_fail(&r, NULL, "duplicate tensor name '%.*s%s'", MSG_NAME(f->tensors[i].name));
    rc = st_check_overlaps(&r);
    if (rc < 0)
        return rc;
    if ((rc = st_align(&r)) < 0 || (rc = st_check_meta_keys(&r)) < 0)
        return rc;
    return st_quant(&r);
}

int fr_st_open(fr_st *f, const char *path, fr_err *err)
{
    int rc;

    if (!f)
        return fr_seterr(err, FR_EINVAL, "fr_st_open: no fr_st");
    memset(f, 0, sizeof *f);
    if (!path)
        return fr_seterr(err, FR_EINVAL, "fr_st_open: no path");
    rc = st_open(f, path, err);
    if (rc != FR_OK)
        fr_st_close(f);
    return rc;
}

void fr_st_close(fr_st *f)
{
    if (!f)
        return;
    /* munmap fails only for a range that is not mapped, which a zeroed or
     * failed fr_st never has: there is nothing to report. */
    if (f->map && munmap(f->map, f->size) != 0)
        f->map = NULL;
    free(f->tensors);
    free(f->names);
    free(f->metadata_json);
    free(f->meta);
    free(f->path);
    fr_free(f->owned);
    while (f->slices) {
        void *next = *(void **)f->slices;
        fr_free(f->slices);
        f->slices = next;
    }
    memset(f, 0, sizeof *f);
}

/* ======================================================================
 * Lookup and binding
 * ====================================================================== */

/* strcmp(prefix + name, s) without building the concatenation. */
static int cmp_prefixed(const char *prefix, const char *name, const char *s)
{
    const unsigned char *a = (const unsigned char *)prefix, *b = (const unsigned char *)s;

    for (; *a; a++, b++)
        if (*a != *b)
            return *a < *b ? -1 : 1;
    for (a = (const unsigned char *)name; *a; a++, b++)
        if (*a != *b)
            return *a < *b ? -1 : 1;
    return *b ? -1 : 0;
}

static const fr_tensor *find_prefixed(const fr_st *f, const char *prefix, const char *name)
{
    int lo = 0, hi = f->ntensors - 1;

    if (!f->tensors)
        return NULL;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = cmp_prefixed(prefix, name, f->tensors[mid].name);
        if (c == 0)
            return &f->tensors[mid];
        if (c < 0)
            hi = mid - 1;
        else
            lo = mid + 1;
    }
    return NULL;
}

const fr_tensor *fr_st_find(const fr_st *f, const char *name)
{
    if (!f || !name)
        return NULL;
    return find_prefixed(f, "", name);
}

const char *fr_st_metadata(const fr_st *f, const char *key)
{
    int i;

    if (!f || !key)
        return NULL;
    for (i = 0; i < f->nmeta; i++)
        if (strcmp(f->meta[i].key, key) == 0)
            return f->meta[i].value;
    return NULL;
}

#define HINT_MAX_NAME 128

/* Edit distance of two short strings, or a large number past HINT_MAX_NAME. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), i, k;
    size_t row[HINT_MAX_NAME + 1];

    if (la > HINT_MAX_NAME || lb > HINT_MAX_NAME)
        return SIZE_MAX;
    for (k = 0; k <= lb; k++)
        row[k] = k;
    for (i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (k = 1; k <= lb; k++) {
            size_t up = row[k];
            size_t best = diag + (a[i - 1] != b[k - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[k - 1] + 1 < best)
                best = row[k - 1] + 1;
            row[k] = best;
            diag = up;
        }
    }
    return row[lb];
}

/*
 * A close name for a "not found" message: first a tensor that ends with
 * ".NAME" (the usual mistake is the prefix), else the nearest name by edit
 * distance if it is near enough to be a typo.  Bounded work: it runs only
 * on the error path and gives up on large files.
 */
static const char *hint_name(const fr_st *f, const char *prefix, const char *name)
{
    char want[HINT_MAX_NAME + 1];
    size_t nl = strlen(name), best = SIZE_MAX, limit;
    const char *hint = NULL;
    int i;

    for (i = 0; i < f->ntensors; i++) {
        const char *s = f->tensors[i].name;
        size_t sl = strlen(s);
        if (sl > nl && strcmp(s + sl - nl, name) == 0 && s[sl - nl - 1] == '.')
            return s;
    }
    if (f->ntensors > 4096 || (size_t)snprintf(want, sizeof want, "%s%s", prefix, name) >= sizeof want)
        return NULL;
    limit = strlen(want) / 4 > 2 ? strlen(want) / 4 : 2;
    for (i = 0; i < f->ntensors; i++) {
        size_t d = edit_distance(want, f->tensors[i].name);
        if (d <= limit && d < best) {
            best = d;
            hint = f->tensors[i].name;
        }
    }
    return hint;
}

int fr_st_bind(const fr_st *f, const char *prefix, const char *name, fr_dtype dtype,
               int rank, const int64_t *shape, const void **data, fr_err *err)
{
    const fr_tensor *t;
    const char *hint;
    char have[160], want[160];
    int i;

    if (data)
        *data = NULL;
    if (!f || !name || !data || rank < 0 || rank > FR_MAX_RANK || (rank > 0 && !shape))
        return fr_seterr(err, FR_EINVAL, "fr_st_bind: bad arguments for tensor '%s'", name ? name : "(null)");
    if (!prefix)
        prefix = "";
    t = find_prefixed(f, prefix, name);
    if (!t) {
        const char *path = f->path ? f->path : "the file";
        hint = hint_name(f, prefix, name);
        if (hint)
            return fr_seterr(err, FR_ENOTFOUND, "tensor '%s%s' not found in %s; did you mean '%s'?",
                             prefix, name, path, hint);
        return fr_seterr(err, FR_ENOTFOUND, "tensor '%s%s' not found in %s", prefix, name, path);
    }
    if (t->dtype != dtype)
        return fr_seterr(err, FR_ETYPE, "tensor '%.*s%s': dtype %s, block expects %s%s", MSG_NAME(t->name),
                         fr_dtype_name(t->dtype), fr_dtype_name(dtype),
                         fr_dtype_block(dtype) > 1 ? " (a quantized tensor is U8 with a \"" FR_QUANT_KEY
                                                     "NAME\" metadata entry: fusec quantize writes it)"
                                                   : fr_dtype_block(t->dtype) > 1 || dtype == FR_BF16 || dtype == FR_F16
                                                         ? " (fusec quantize converts a checkpoint)" : "");
    for (i = 0; i < rank && t->rank == rank; i++)
        if (t->shape[i] != shape[i])
            break;
    if (t->rank != rank || i < rank)
        return fr_seterr(err, FR_ESHAPE, "tensor '%.*s%s': shape %s, block expects %s", MSG_NAME(t->name),
                         fmt_shape(have, sizeof have, t->rank, t->shape),
                         fmt_shape(want, sizeof want, rank, shape));
    *data = t->data;
    return FR_OK;
}

/* Serializes the slice list of a file bound from several threads at once. */
static pthread_mutex_t slice_lock = PTHREAD_MUTEX_INITIALIZER;

int fr_st_bind_slice(const fr_st *f, const char *prefix, const char *name, fr_dtype dtype, int rank,
                     const int64_t *shape, int axis, int64_t start, int64_t len, const void **data,
                     fr_err *err)
{
    const void *whole;
    int rc = fr_st_bind(f, prefix, name, dtype, rank, shape, &whole, err);
    if (rc != FR_OK)
        return rc;
    if (axis < 0 || axis >= rank || start < 0 || len < 1 || start > shape[axis] - len) {
        *data = NULL;
        return fr_seterr(err, FR_EINVAL, "tensor '%s%s': slice [%lld, %lld) of axis %d is outside its shape",
                         prefix ? prefix : "", name, (long long)start, (long long)(start + len), axis);
    }
    size_t es = fr_dtype_size(dtype);
    int64_t outer = 1, inner = 1;
    for (int d = 0; d < axis; d++)
        outer *= shape[d];
    for (int d = axis + 1; d < rank; d++)
        inner *= shape[d];
    if (axis == 0 && fr_dtype_block(dtype) > 1) {
        /* rows of blocks: a row is the last dim's bytes */
        uint64_t bytes = 0;
        fr_dtype_nbytes(dtype, rank, shape, &bytes);   /* fr_st_bind checked the tensor */
        *data = (const char *)whole + (size_t)(bytes / (uint64_t)shape[0]) * (size_t)start;
        return FR_OK;
    }
    if (es == 0) {
        *data = NULL;
        return fr_seterr(err, FR_ETYPE, "tensor '%s%s': a %s tensor cannot be split along axis %d (--tp splits "
                         "quantized weights only by rows)", prefix ? prefix : "", name, fr_dtype_name(dtype), axis);
    }
    if (axis == 0) {
        *data = (const char *)whole + es * (size_t)(start * inner);
        return FR_OK;
    }
    /* strided: outer runs of len * inner elements, every shape[axis] * inner */
    size_t run = es * (size_t)(len * inner), total = run * (size_t)outer;
    char *copy = fr_alloc(FR_ALIGN + total);
    if (!copy) {
        *data = NULL;
        return fr_seterr(err, FR_ENOMEM, "tensor '%s%s': out of memory for this rank's slice (%zu bytes)",
                         prefix ? prefix : "", name, total);
    }
    for (int64_t o = 0; o < outer; o++)
        memcpy(copy + FR_ALIGN + run * (size_t)o,
               (const char *)whole + es * (size_t)((o * shape[axis] + start) * inner), run);
    pthread_mutex_lock(&slice_lock);
    fr_st *owner = (fr_st *)(uintptr_t)f;   /* the file owns the copy: freed by fr_st_close */
    *(void **)copy = owner->slices;
    owner->slices = copy;
    pthread_mutex_unlock(&slice_lock);
    *data = copy + FR_ALIGN;
    return FR_OK;
}
