/*
 * fuzz_st.c - libFuzzer harness for the safetensors reader and binding.
 *
 * One input is one file's bytes.  fr_st_open takes a path (it mmaps the
 * file), so each input is written to one temporary file and opened.  The
 * reader promises that no input makes it crash or read outside the mapping,
 * and that a defect is an error with a message; on success the harness
 * holds it to what it returned:
 *   - every tensor has a name, a known dtype, a rank in [0, FR_MAX_RANK],
 *     non-negative dims whose product times the element size is nbytes;
 *   - its data lies inside the mapping (or in the owned aligned copy) and is
 *     aligned to the element size; every byte is read, so ASan sees an
 *     overrun of the owned copy;
 *   - names are sorted and unique, and fr_st_find finds each tensor itself;
 *   - fr_st_bind with the tensor's own dtype and shape succeeds and returns
 *     its data; with another dtype or shape it fails naming the tensor;
 *   - fr_bind_block on a small block (the names the seeds use) either binds
 *     every weight or fails with a message and no weight half-bound.
 * Any violation aborts, which libFuzzer records as a crash.
 */
#include "fusec_rt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char file_path[4096];

static void fail(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_st: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir)
        dir = "/tmp";
    snprintf(file_path, sizeof file_path, "%s/fuzz_st.XXXXXX", dir);
    int fd = mkstemp(file_path);
    if (fd < 0)
        fail("cannot create a temporary file", strerror(errno));
    close(fd);
    return 0;
}

/* The block that fr_bind_block binds: names and shapes the seed files of
 * tests/fuzz/make_seeds.py use, so the fuzzer starts at the success path. */
static const fr_tensor_desc block_weights[] = {
    {"input_layernorm.weight", FR_F32, 1, {4}, {{0}}},
    {"self_attn.q_proj.weight", FR_F32, 2, {4, 4}, {{0}}},
    {"position_ids", FR_I32, 1, {3}, {{0}}},
    {"scale", FR_F32, 0, {0}, {{0}}},
};
static const fr_block_desc block = {
    .name = "fuzz", .target = "generic", .cache_sym = -1, .nweights = 4, .weights = block_weights,
};

static void check_err(const fr_err *err, int rc, const char *must_name)
{
    if (rc >= 0)
        fail("a failure returned a non-negative code", NULL);
    if (err->code != rc)
        fail("err.code differs from the returned code", err->msg);
    if (!memchr(err->msg, '\0', sizeof err->msg) || !err->msg[0])
        fail("an error without a message", NULL);
    /* the runtime cuts long names at 128 bytes so the problem still fits */
    char head[101];
    if (must_name) {
        snprintf(head, sizeof head, "%s", must_name);
        if (!strstr(err->msg, head))
            fail("the message does not name the tensor", err->msg);
        if (strlen(must_name) > 200 && !strstr(err->msg, "expects"))
            fail("a long name pushed the problem out of the message", err->msg);
    }
}

static void check_tensor(const fr_st *f, const fr_tensor *t, int idx)
{
    if (!t->name)
        fail("a tensor without a name", NULL);
    if ((int)t->dtype < 0 || t->dtype >= FR_NDTYPES)
        fail("unknown dtype", t->name);
    if (t->rank < 0 || t->rank > FR_MAX_RANK)
        fail("rank out of range", t->name);
    size_t es = fr_dtype_size(t->dtype);
    if (es == 0)
        fail("element size 0", t->name);
    /* the product in unsigned arithmetic: a reader that let it overflow
     * would show here as a mismatch with nbytes */
    unsigned long long n = es;
    int overflow = 0;
    for (int d = 0; d < t->rank; d++) {
        if (t->shape[d] < 0)
            fail("negative dim", t->name);
        unsigned long long s = (unsigned long long)t->shape[d];
        if (s && n > ~0ULL / s)
            overflow = 1;
        n *= s;
    }
    if (overflow || n != t->nbytes)
        fail("nbytes is not numel * element size", t->name);
    if (t->nbytes && !t->data)
        fail("data is NULL", t->name);
    if (t->data && (uintptr_t)t->data % es != 0)
        fail("data misaligned", t->name);
    const unsigned char *p = t->data, *m = f->map;
    int in_map = t->nbytes == 0 || (p >= m && p <= m + f->size && t->nbytes <= (size_t)(m + f->size - p));
    if (!in_map && !f->owned)
        fail("data outside the mapping", t->name);
    /* read every byte: an owned copy that is too short is an ASan report */
    volatile unsigned char sum = 0;
    for (size_t i = 0; i < t->nbytes; i++)
        sum ^= p[i];
    (void)sum;
    if (idx > 0 && strcmp(f->tensors[idx - 1].name, t->name) >= 0)
        fail("names not sorted and unique", t->name);
    if (fr_st_find(f, t->name) != t)
        fail("fr_st_find does not find the tensor", t->name);

    /* binding: right dtype and shape succeed; wrong ones fail naming it */
    const void *data;
    fr_err err;
    memset(&err, 0, sizeof err);
    int rc = fr_st_bind(f, "", t->name, t->dtype, t->rank, t->shape, &data, &err);
    if (rc != FR_OK || data != t->data)
        fail("binding a tensor to its own dtype and shape fails", err.msg);
    fr_dtype other = t->dtype == FR_F32 ? FR_I32 : FR_F32;
    rc = fr_st_bind(f, "", t->name, other, t->rank, t->shape, &data, &err);
    check_err(&err, rc, t->name);
    if (data)
        fail("a failed bind returned data", t->name);
    int64_t shape[FR_MAX_RANK + 1];
    memcpy(shape, t->shape, sizeof t->shape);
    shape[t->rank] = 1;
    rc = fr_st_bind(f, "", t->name, t->dtype, t->rank + 1 <= FR_MAX_RANK ? t->rank + 1 : 0,
                    shape, &data, &err);
    check_err(&err, rc, t->name);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = open(file_path, O_WRONLY | O_TRUNC);
    if (fd < 0)
        fail("cannot open the temporary file", strerror(errno));
    size_t done = 0;
    while (done < size) {
        ssize_t w = write(fd, data + done, size - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            fail("cannot write the temporary file", strerror(errno));
        done += (size_t)w;
    }
    if (close(fd) != 0)
        fail("cannot write the temporary file", strerror(errno));

    fr_st f;
    fr_err err;
    memset(&err, 0, sizeof err);
    int rc = fr_st_open(&f, file_path, &err);
    if (rc != FR_OK) {
        check_err(&err, rc, NULL);
        if (f.map || f.tensors || f.names)
            fail("a failed open left memory in the fr_st", NULL);
        return 0;
    }
    if (f.ntensors < 0 || (f.ntensors > 0 && !f.tensors))
        fail("bad tensor table", NULL);
    if (f.metadata_json)
        (void)strlen(f.metadata_json);
    for (int i = 0; i < f.ntensors; i++)
        check_tensor(&f, &f.tensors[i], i);
    (void)fr_st_find(&f, "w.no such tensor");

    const void *weights[4];
    rc = fr_bind_block(&block, &f, "w.", weights, &err);
    if (rc == FR_OK) {
        for (int i = 0; i < block.nweights; i++)
            if (!weights[i])
                fail("fr_bind_block left a weight unbound", block_weights[i].name);
    } else {
        check_err(&err, rc, NULL);
        for (int i = 0; i < block.nweights; i++)
            if (weights[i])
                fail("a failed fr_bind_block left a weight bound", block_weights[i].name);
    }
    fr_st_close(&f);
    return 0;
}
