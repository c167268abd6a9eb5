/*
 * util.c - the compiler's arena, strings, growable buffers and internal errors.
 *
 * fusec is a batch program: everything it allocates lives until exit, so one
 * arena of large chunks replaces per-node malloc/free (chibicc never frees).
 * Allocation failure is fatal because no useful recovery exists.
 */
#include "fusec.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct Chunk Chunk;
struct Chunk {
    Chunk *next;
    size_t used, cap;
    /* max_align_t is C11; double and pointers cover what the compiler stores */
    union { double d; void *p; int64_t i; } data[];
};

static Chunk *arena;

void *fu_alloc(size_t n) {
    size_t need = (n + 15) & ~(size_t)15;
    if (need < n)
        fu_internal(__FILE__, __LINE__, "allocation of %zu bytes overflows", n);
    if (!arena || arena->cap - arena->used < need) {
        size_t cap = need > (1u << 20) ? need : (1u << 20);
        Chunk *c = malloc(sizeof(Chunk) + cap);
        if (!c) { /* GCOVR_EXCL_START: out of memory (docs/coverage.md) */
            fprintf(stderr, "fusec: fatal error: out of memory\n");
            exit(EXIT_INTERNAL);
        } /* GCOVR_EXCL_STOP */
        c->next = arena;
        c->used = 0;
        c->cap = cap;
        arena = c;
    }
    char *p = (char *)arena->data + arena->used;
    arena->used += need;
    memset(p, 0, n);
    return p;
}

/* Frees every chunk.  Only for a driver that compiles many inputs in one
 * process (the fuzz harness): no pointer into the arena may be used after. */
void fu_arena_release(void) {
    while (arena) {
        Chunk *next = arena->next;
        free(arena);
        arena = next;
    }
}

FuMark fu_arena_mark(void) {
    FuMark m = {arena, arena ? arena->used : 0};
    return m;
}

void fu_arena_release_to(FuMark m) {
    while (arena && arena != (Chunk *)m.chunk) {
        Chunk *next = arena->next;
        free(arena);
        arena = next;
    }
    FU_ASSERT(arena == (Chunk *)m.chunk);
    if (arena) {
        /* a stale pointer into the reused part reads garbage, not a plausible string */
        memset((char *)arena->data + m.used, 0xa5, arena->used - m.used);
        arena->used = m.used;
    }
}

char *fu_strndup(const char *s, size_t n) {
    char *p = fu_alloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *fu_strdup(const char *s) { return fu_strndup(s, strlen(s)); }

char *fu_format(const char *fmt, ...) {
    char small[256];        /* most results fit: format once */
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    FU_ASSERT(n >= 0);
    if ((size_t)n < sizeof small)
        return fu_strndup(small, (size_t)n);
    char *p = fu_alloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

/* No source file comes near this; it stops `import "/dev/zero"` from
 * reading until memory runs out. */
#define FU_MAX_FILE ((size_t)64 << 20)

static const char *read_why; /* why the last fu_read_file failed, if not errno */

const char *fu_read_error(int err) { return read_why ? read_why : strerror(err); }

char *fu_read_file(const char *path, size_t *len) {
    /* Opened without blocking and checked before the first read: a FIFO
     * (or a socket) with no writer would otherwise block open() forever.
     * Sources are files; a FIFO is refused even when something writes it. */
    struct stat st;
    int fd = open(path, O_RDONLY | O_NONBLOCK), flags;
    read_why = NULL;
    if (fd < 0)
        return NULL;
    if (fstat(fd, &st) != 0 || (flags = fcntl(fd, F_GETFL)) < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0) {
        /* GCOVR_EXCL_START: fstat and fcntl fail only for a bad fd (docs/coverage.md) */
        int e = errno;
        close(fd);
        errno = e;
        return NULL;
    } /* GCOVR_EXCL_STOP */
    if (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode)) {
        read_why = S_ISFIFO(st.st_mode) ? "a FIFO, not a regular file" : "a socket, not a regular file";
        close(fd);
        errno = EINVAL;
        return NULL;
    }
    FILE *f = fdopen(fd, "rb");
    if (!f) { /* GCOVR_EXCL_START: fdopen of an open fd fails only out of memory (docs/coverage.md) */
        int e = errno;
        close(fd);
        errno = e;
        return NULL;
    } /* GCOVR_EXCL_STOP */
    Buf b = {0};
    char tmp[65536];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) {
        if (b.len + n > FU_MAX_FILE) {
            fclose(f);
            errno = EFBIG;
            return NULL;
        }
        if (b.len + n + 1 > b.cap) {
            size_t cap = b.cap ? b.cap : 65536;
            while (cap < b.len + n + 1)
                cap *= 2;
            char *d = fu_alloc(cap);
            if (b.len)
                memcpy(d, b.data, b.len);
            b.data = d;
            b.cap = cap;
        }
        memcpy(b.data + b.len, tmp, n);
        b.len += n;
    }
    int err = ferror(f) ? errno : 0;
    fclose(f);
    if (err) {
        errno = err;
        return NULL;
    }
    if (!b.data)
        b.data = fu_alloc(1);
    b.data[b.len] = '\0';
    if (len)
        *len = b.len;
    return b.data;
}

static void buf_reserve(Buf *b, size_t extra) {
    if (b->len + extra + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap * 2 : 256;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d) { /* GCOVR_EXCL_START: out of memory (docs/coverage.md) */
        fprintf(stderr, "fusec: fatal error: out of memory\n");
        exit(EXIT_INTERNAL);
    } /* GCOVR_EXCL_STOP */
    b->data = d;
    b->cap = cap;
}

void buf_vprintf(Buf *b, const char *fmt, va_list ap) {
    /* format into the room there is; only when it is too small, grow and
     * format again (formatting twice every time cost a tenth of a compile) */
    va_list again;
    va_copy(again, ap);
    buf_reserve(b, 0);
    size_t room = b->cap - b->len;
    int n = vsnprintf(b->data + b->len, room, fmt, ap);
    FU_ASSERT(n >= 0);
    if ((size_t)n >= room) {
        buf_reserve(b, (size_t)n);
        vsnprintf(b->data + b->len, (size_t)n + 1, fmt, again);
    }
    va_end(again);
    b->len += (size_t)n;
}

void buf_printf(Buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(b, fmt, ap);
    va_end(ap);
}

void buf_puts(Buf *b, const char *s) {
    size_t n = strlen(s);
    buf_reserve(b, n);
    memcpy(b->data + b->len, s, n + 1);
    b->len += n;
}

/* GCOVR_EXCL_START: reached only through a bug of fusec (docs/coverage.md) */
void fu_internal(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "fusec: internal error at %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nfusec: this is a bug in fusec; please report it with the input that triggered it\n");
    exit(EXIT_INTERNAL);
}
/* GCOVR_EXCL_STOP */

/* ---- string maps -------------------------------------------------------------- */

/* Open addressing with linear probing, FNV-1a hashes, load at most 1/2;
 * the table lives in the arena and a grown one leaves the old behind. */
struct StrMap {
    const char **keys;
    void **vals;
    size_t cap, n;
};

static size_t str_hash(const char *s) {
    uint64_t h = 1469598103934665603u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return (size_t)h;
}

StrMap *strmap_new(void) {
    StrMap *m = fu_alloc(sizeof *m);
    m->cap = 16;
    m->keys = fu_alloc(sizeof *m->keys * m->cap);
    m->vals = fu_alloc(sizeof *m->vals * m->cap);
    return m;
}

static size_t strmap_slot(const StrMap *m, const char *key) {
    size_t i = str_hash(key) & (m->cap - 1);
    while (m->keys[i] && strcmp(m->keys[i], key) != 0)
        i = (i + 1) & (m->cap - 1);
    return i;
}

void *strmap_get(const StrMap *m, const char *key) {
    size_t i = strmap_slot(m, key);
    return m->keys[i] ? m->vals[i] : NULL;
}

bool strmap_has(const StrMap *m, const char *key) { return m->keys[strmap_slot(m, key)] != NULL; }

void *strmap_put(StrMap *m, const char *key, void *val) {
    if (2 * (m->n + 1) > m->cap) {
        StrMap old = *m;
        m->cap *= 2;
        m->keys = fu_alloc(sizeof *m->keys * m->cap);
        m->vals = fu_alloc(sizeof *m->vals * m->cap);
        for (size_t i = 0; i < old.cap; i++)
            if (old.keys[i]) {
                size_t j = strmap_slot(m, old.keys[i]);
                m->keys[j] = old.keys[i];
                m->vals[j] = old.vals[i];
            }
    }
    size_t i = strmap_slot(m, key);
    void *prev = m->keys[i] ? m->vals[i] : NULL;
    if (!m->keys[i]) {
        m->keys[i] = key;
        m->n++;
    }
    m->vals[i] = val;
    return prev;
}

size_t strmap_count(const StrMap *m) { return m->n; }
