/*
 * diag.c - diagnostics in the format of gcc and clang.
 *
 *   file:line:col: error: message
 *     12 |   h = rms_norm(x, w, eps = 1e-5)
 *        |       ^~~~~~~~
 *
 * Source text is registered per file so that any stage holding a SrcLoc can
 * quote the line.  Errors are counted so a stage can keep going and report
 * several before the driver gives up; past DIAG_MAX_ERRORS fusec stops.
 */
#include "fusec.h"

#include <stdlib.h>
#include <string.h>

typedef struct Source {
    const char *file;
    const char *text;
} Source;

static Source *sources;
static int nsources, capsources;
static int nerrors;
static int max_errors = DIAG_MAX_ERRORS;

void diag_add_source(const char *file, const char *text) {
    if (nsources == capsources) {
        int cap = capsources ? capsources * 2 : 8;
        Source *s = fu_alloc(sizeof(Source) * (size_t)cap);
        if (nsources)
            memcpy(s, sources, sizeof(Source) * (size_t)nsources);
        sources = s;
        capsources = cap;
    }
    sources[nsources].file = file;
    sources[nsources].text = text;
    nsources++;
}

static const char *find_source(const char *file) {
    for (int i = nsources - 1; i >= 0; i--)
        if (strcmp(sources[i].file, file) == 0)
            return sources[i].text;
    return NULL;
}

/* Prints the line of loc and a caret under its columns.  Tabs in the line
 * are kept in the caret line so the caret lines up in any tab width;
 * unprintable bytes are shown as '?' so the terminal stays sane. */
static void quote_line(SrcLoc loc) {
    const char *text = find_source(loc.file);
    if (!text || loc.line < 1)
        return;
    const char *p = text;
    for (int l = 1; l < loc.line && *p; p++)
        if (*p == '\n')
            l++;
    const char *end = p;
    while (*end && *end != '\n')
        end++;
    int width = (int)(end - p);
    fprintf(stderr, "%5d | ", loc.line);
    for (const char *q = p; q < end; q++) {
        unsigned char c = (unsigned char)*q;
        fputc(c == '\t' || (c >= 32 && c < 127) ? c : '?', stderr);
    }
    fputs("\n      | ", stderr);
    int col = loc.col < 1 ? 1 : loc.col;
    for (int i = 1; i < col; i++)
        fputc(i - 1 < width && p[i - 1] == '\t' ? '\t' : ' ', stderr);
    fputc('^', stderr);
    int len = loc.len;
    if (col - 1 + len > width)
        len = width - (col - 1);
    for (int i = 1; i < len; i++)
        fputc('~', stderr);
    fputc('\n', stderr);
}

/* Length of the valid UTF-8 sequence at s (1 to 4 bytes), or 0. */
static int utf8_len(const unsigned char *s) {
    int n = s[0] < 0x80 ? 1 : s[0] >= 0xc2 && s[0] < 0xe0 ? 2 : s[0] >= 0xe0 && s[0] < 0xf0 ? 3
          : s[0] >= 0xf0 && s[0] < 0xf5 ? 4 : 0;
    for (int i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    if ((n == 3 && s[0] == 0xe0 && s[1] < 0xa0) || (n == 4 && s[0] == 0xf0 && s[1] < 0x90) ||
        (n == 4 && s[0] == 0xf4 && s[1] >= 0x90) || (n == 3 && s[0] == 0xed && s[1] >= 0xa0))
        return 0;   /* overlong, past U+10FFFF, or a surrogate */
    return n;
}

/* Messages quote user text (names, strings): control bytes and invalid
 * UTF-8 are written \xNN so that no input can garble the terminal. */
static void put_message(const char *fmt, va_list ap) {
    va_list aq;
    va_copy(aq, ap);
    int n = vsnprintf(NULL, 0, fmt, aq);
    va_end(aq);
    char *msg = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (!msg) {
        vfprintf(stderr, fmt, ap);
        return;
    }
    vsnprintf(msg, (size_t)n + 1, fmt, ap);
    for (const unsigned char *p = (const unsigned char *)msg; *p;) {
        int len = utf8_len(p);
        if (len == 1 && *p >= 32 && *p != 127) {
            fputc(*p++, stderr);
        } else if (len > 1) {
            fwrite(p, 1, (size_t)len, stderr);
            p += len;
        } else {
            fprintf(stderr, "\\x%02X", *p++);
        }
    }
    free(msg);
}

static void report(SrcLoc loc, const char *kind, const char *fmt, va_list ap) {
    if (loc.file)
        fprintf(stderr, "%s:%d:%d: %s: ", loc.file, loc.line, loc.col, kind);
    else
        fprintf(stderr, "fusec: %s: ", kind);
    put_message(fmt, ap);
    fputc('\n', stderr);
    if (loc.file)
        quote_line(loc);
}

static void count_error(void) {
    if (++nerrors >= max_errors && max_errors > 0) {
        fprintf(stderr, "fusec: fatal error: too many errors emitted, stopping now\n");
        exit(EXIT_FAIL);
    }
}

void diag_error(SrcLoc loc, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    report(loc, "error", fmt, ap);
    va_end(ap);
    count_error();
}

void diag_note(SrcLoc loc, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    report(loc, "note", fmt, ap);
    va_end(ap);
}

void diag_plain_error(const char *fmt, ...) {
    SrcLoc none = {0};
    va_list ap;
    va_start(ap, fmt);
    report(none, "error", fmt, ap);
    va_end(ap);
    count_error();
}

int diag_error_count(void) { return nerrors; }

void diag_reset(void) { nerrors = 0; }

/* A fuzz harness compiles millions of inputs in one process: it must not
 * exit on the 20th error, and it frees the arena between inputs, so the
 * registered sources (arena memory) are forgotten with it. */
void diag_set_max_errors(int n) { max_errors = n; }

void diag_forget_sources(void) {
    sources = NULL;
    nsources = capsources = 0;
}
