/*
 * test_safetensors.c - the safetensors reader, binding and writer.
 *
 * Three kinds of evidence:
 *  - the golden files in $GOLDEN (default tests/golden/hf) (made by PyTorch, not by us): names,
 *    dtypes, shapes and values that were read independently with numpy
 *    (json + numpy.frombuffer in /usr/bin/python3) and are hard-coded here;
 *  - a corpus of malformed files that each test builds in a temporary folder,
 *    one defect per file: each must fail with FR_EFORMAT (or FR_EIO) and a
 *    message holding the file name and a key phrase, and never crash
 *    (`make SAN=1` runs this under ASan and UBSan);
 *  - writer round trips, an exact header for a small file, a check of a
 *    written file by Python's json and numpy, and failures that must leave
 *    no file behind.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fusec_rt.h"

/* ---- helpers ------------------------------------------------------------ */

static char tmpdir[64];

static const char *golden(const char *file)
{
    static char path[1024];
    const char *dir = getenv("GOLDEN");

    snprintf(path, sizeof path, "%s/%s", dir && *dir ? dir : "tests/golden/hf", file);
    return path;
}

static const char *tmp_path(const char *name)
{
    static char path[256];

    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    return path;
}

static int setup_tmpdir(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/fr_st_test.XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

/* Removes everything in tmpdir (flat: the tests make no subfolders except
 * the ones they remove themselves). */
static int teardown_tmpdir(void **state)
{
    DIR *d = opendir(tmpdir);
    struct dirent *de;
    char path[512];

    (void)state;
    if (!d)
        return -1;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", tmpdir, de->d_name);
        if (unlink(path) != 0)
            rmdir(path);
    }
    closedir(d);
    return rmdir(tmpdir);
}

/* Number of directory entries in tmpdir whose name contains `part`. */
static int count_files_with(const char *part)
{
    DIR *d = opendir(tmpdir);
    struct dirent *de;
    int n = 0;

    assert_non_null(d);
    while ((de = readdir(d)) != NULL)
        if (strstr(de->d_name, part))
            n++;
    closedir(d);
    return n;
}

static void write_bytes(const char *path, const void *p, size_t n)
{
    FILE *fp = fopen(path, "wb");

    assert_non_null(fp);
    if (n)
        assert_int_equal(fwrite(p, 1, n, fp), n);
    assert_int_equal(fclose(fp), 0);
}

static void put_u64le(unsigned char *p, uint64_t v)
{
    int i;

    for (i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* Writes a safetensors file with the given header text (not padded) and a
 * data area of ndata bytes holding 0, 1, 2, ... */
static const char *make_st(const char *name, const char *header, size_t hlen, size_t ndata)
{
    const char *path = tmp_path(name);
    unsigned char *buf = malloc(8 + hlen + ndata + 1);
    size_t i;

    assert_non_null(buf);
    put_u64le(buf, hlen);
    memcpy(buf + 8, header, hlen);
    for (i = 0; i < ndata; i++)
        buf[8 + hlen + i] = (unsigned char)i;
    write_bytes(path, buf, 8 + hlen + ndata);
    free(buf);
    return path;
}

static const char *make_st_str(const char *name, const char *header, size_t ndata)
{
    return make_st(name, header, strlen(header), ndata);
}

/* Opens path, expects code and a message holding the file name and phrase. */
static void expect_open_fail(const char *path, int code, const char *phrase)
{
    fr_st f;
    fr_err e;
    int rc;

    memset(&e, 0, sizeof e);
    rc = fr_st_open(&f, path, &e);
    if (rc != code || !strstr(e.msg, phrase) || !strstr(e.msg, path))
        fail_msg("%s: got %d \"%s\", expected %d and \"%s\"", path, rc, e.msg, code, phrase);
    assert_int_equal(e.code, code);
    /* A failed open leaves nothing to free; closing it is still safe. */
    assert_null(f.map);
    assert_null(f.tensors);
    assert_null(f.names);
    assert_null(f.path);
    fr_st_close(&f);
}

static void expect_header_fail(const char *header, size_t ndata, const char *phrase)
{
    expect_open_fail(make_st_str("bad.safetensors", header, ndata), FR_EFORMAT, phrase);
}

static const fr_tensor *must_find(const fr_st *f, const char *name)
{
    const fr_tensor *t = fr_st_find(f, name);

    if (!t)
        fail_msg("tensor '%s' not found", name);
    return t;
}

static void assert_shape(const fr_tensor *t, fr_dtype dt, int rank, int64_t d0, int64_t d1)
{
    assert_int_equal(t->dtype, dt);
    assert_int_equal(t->rank, rank);
    if (rank > 0)
        assert_int_equal(t->shape[0], d0);
    if (rank > 1)
        assert_int_equal(t->shape[1], d1);
    assert_int_equal(t->nbytes, (size_t)(d0 * (rank > 1 ? d1 : 1)) * fr_dtype_size(dt));
    assert_int_equal((uintptr_t)t->data % fr_dtype_size(dt), 0);
}

/* ---- golden files ------------------------------------------------------- */

static void test_golden_llama(void **state)
{
    static const char *const names[] = {
        "in.hidden_states", "in.position_ids", "out.hidden_states", "out64.hidden_states",
        "w.input_layernorm.weight", "w.mlp.down_proj.weight", "w.mlp.gate_proj.weight",
        "w.mlp.up_proj.weight", "w.post_attention_layernorm.weight", "w.self_attn.k_proj.weight",
        "w.self_attn.o_proj.weight", "w.self_attn.q_proj.weight", "w.self_attn.v_proj.weight",
    };
    const fr_tensor *t;
    const float *q, *ln;
    const int32_t *pos;
    double sum = 0;
    fr_st f;
    fr_err e;
    int i;

    (void)state;
    if (fr_st_open(&f, golden("llama_layer.safetensors"), &e) != FR_OK)
        fail_msg("%s", e.msg);
    assert_int_equal(f.ntensors, 13);
    for (i = 0; i < 13; i++)
        assert_string_equal(f.tensors[i].name, names[i]); /* sorted by name */
    assert_non_null(f.metadata_json);
    assert_true(f.metadata_json[0] == '{');
    assert_non_null(strstr(f.metadata_json, "\"config\":"));
    assert_non_null(strstr(f.metadata_json, "\"module\":\"LlamaDecoderLayer\""));

    assert_shape(must_find(&f, "in.hidden_states"), FR_F32, 2, 13, 256);
    assert_shape(must_find(&f, "out64.hidden_states"), FR_F64, 2, 13, 256);
    assert_shape(must_find(&f, "w.mlp.down_proj.weight"), FR_F32, 2, 256, 704);
    assert_shape(must_find(&f, "w.self_attn.k_proj.weight"), FR_F32, 2, 64, 256);
    t = must_find(&f, "in.position_ids");
    assert_shape(t, FR_I32, 1, 13, 0);
    pos = t->data;
    for (i = 0; i < 13; i++)
        assert_int_equal(pos[i], i);

    /* Values read with numpy: q_proj[3, 7], down_proj[255, 703], out64[5, 100]. */
    q = must_find(&f, "w.self_attn.q_proj.weight")->data;
    assert_true(q[3 * 256 + 7] == -0.07138464599847794f);
    assert_true(((const float *)must_find(&f, "w.mlp.down_proj.weight")->data)[255 * 704 + 703] ==
                -0.0489075593650341f);
    assert_true(((const double *)must_find(&f, "out64.hidden_states")->data)[5 * 256 + 100] ==
                -0.49450955556550646);
    assert_true(((const float *)must_find(&f, "in.hidden_states")->data)[12 * 256] ==
                -0.7752587795257568f);
    /* numpy: w.input_layernorm.weight.astype(float64).sum() = 256.7692530155182 */
    ln = must_find(&f, "w.input_layernorm.weight")->data;
    for (i = 0; i < 256; i++)
        sum += ln[i];
    assert_float_equal(sum, 256.7692530155182, 1e-9);

    assert_null(fr_st_find(&f, "w.self_attn.q_proj"));
    assert_null(fr_st_find(&f, ""));
    assert_null(fr_st_find(&f, "zzz"));
    fr_st_close(&f);
    fr_st_close(&f); /* twice is harmless */
}

static void test_golden_gpt2(void **state)
{
    const fr_tensor *t;
    fr_st f;
    fr_err e;

    (void)state;
    if (fr_st_open(&f, golden("gpt2_block.safetensors"), &e) != FR_OK)
        fail_msg("%s", e.msg);
    assert_int_equal(f.ntensors, 15);
    assert_string_equal(f.tensors[0].name, "in.hidden_states");
    assert_string_equal(f.tensors[14].name, "w.mlp.c_proj.weight");
    assert_non_null(strstr(f.metadata_json, "\"module\":\"GPT2Block\""));
    t = must_find(&f, "w.attn.c_attn.weight");
    assert_shape(t, FR_F32, 2, 256, 768); /* Conv1D: [in, out] */
    assert_true(((const float *)t->data)[10 * 768 + 500] == 0.15980201959609985f);
    t = must_find(&f, "w.ln_1.bias");
    assert_shape(t, FR_F32, 1, 256, 0);
    assert_true(((const float *)t->data)[17] == 1.04025137424469f);
    t = must_find(&f, "out64.hidden_states");
    assert_true(((const double *)t->data)[0] == -4.803879363439833);
    assert_shape(must_find(&f, "w.mlp.c_fc.bias"), FR_F32, 1, 1024, 0);
    fr_st_close(&f);
}

/* ---- binding ------------------------------------------------------------ */

static void test_bind_golden(void **state)
{
    static const int64_t sq[2] = {256, 256}, bad[2] = {256, 255}, flat[1] = {65536};
    const void *p;
    fr_st f;
    fr_err e;

    (void)state;
    if (fr_st_open(&f, golden("llama_layer.safetensors"), &e) != FR_OK)
        fail_msg("%s", e.msg);
    assert_int_equal(fr_st_bind(&f, "w.", "self_attn.q_proj.weight", FR_F32, 2, sq, &p, &e), FR_OK);
    assert_ptr_equal(p, must_find(&f, "w.self_attn.q_proj.weight")->data);
    /* No prefix: the full name. */
    assert_int_equal(fr_st_bind(&f, NULL, "w.self_attn.q_proj.weight", FR_F32, 2, sq, &p, &e), FR_OK);
    assert_int_equal(fr_st_bind(&f, "", "w.self_attn.q_proj.weight", FR_F32, 2, sq, &p, &e), FR_OK);

    /* A typo: not found, with the close name as a hint. */
    assert_int_equal(fr_st_bind(&f, "w.", "self_attn.q_proj.weights", FR_F32, 2, sq, &p, &e), FR_ENOTFOUND);
    assert_null(p);
    assert_non_null(strstr(e.msg, "tensor 'w.self_attn.q_proj.weights' not found in "));
    assert_non_null(strstr(e.msg, "llama_layer.safetensors"));
    assert_non_null(strstr(e.msg, "did you mean 'w.self_attn.q_proj.weight'"));
    /* The wrong prefix: the hint shows the name under the file's prefix. */
    assert_int_equal(fr_st_bind(&f, "model.layers.0.", "self_attn.q_proj.weight", FR_F32, 2, sq, &p, &e),
                     FR_ENOTFOUND);
    assert_non_null(strstr(e.msg, "tensor 'model.layers.0.self_attn.q_proj.weight' not found"));
    assert_non_null(strstr(e.msg, "did you mean 'w.self_attn.q_proj.weight'"));
    /* Nothing close: no hint. */
    assert_int_equal(fr_st_bind(&f, "w.", "lm_head.weight", FR_F32, 2, sq, &p, &e), FR_ENOTFOUND);
    assert_null(strstr(e.msg, "did you mean"));
    /* A prefix alone is not a name: "w." + "" does not exist. */
    assert_int_equal(fr_st_bind(&f, "w.", "", FR_F32, 0, NULL, &p, &e), FR_ENOTFOUND);

    assert_int_equal(fr_st_bind(&f, "w.", "self_attn.q_proj.weight", FR_F16, 2, sq, &p, &e), FR_ETYPE);
    assert_string_equal(e.msg, "tensor 'w.self_attn.q_proj.weight': dtype F32, block expects F16 "
                               "(fusec quantize converts a checkpoint)");
    assert_int_equal(fr_st_bind(&f, "w.", "self_attn.q_proj.weight", FR_F32, 2, bad, &p, &e), FR_ESHAPE);
    assert_string_equal(e.msg, "tensor 'w.self_attn.q_proj.weight': shape [256, 256], block expects [256, 255]");
    assert_int_equal(fr_st_bind(&f, "w.", "self_attn.q_proj.weight", FR_F32, 1, flat, &p, &e), FR_ESHAPE);
    assert_string_equal(e.msg, "tensor 'w.self_attn.q_proj.weight': shape [256, 256], block expects [65536]");
    assert_int_equal(fr_st_bind(&f, "in.", "position_ids", FR_I32, 1, (const int64_t[]){13}, &p, &e), FR_OK);
    assert_int_equal(((const int32_t *)p)[12], 12);

    /* Bad arguments are FR_EINVAL, not crashes. */
    assert_int_equal(fr_st_bind(&f, "w.", "x", FR_F32, FR_MAX_RANK + 1, sq, &p, &e), FR_EINVAL);
    assert_int_equal(fr_st_bind(&f, "w.", "x", FR_F32, 2, NULL, &p, &e), FR_EINVAL);
    assert_int_equal(fr_st_bind(&f, "w.", NULL, FR_F32, 2, sq, &p, &e), FR_EINVAL);
    assert_int_equal(fr_st_bind(NULL, "w.", "x", FR_F32, 2, sq, &p, &e), FR_EINVAL);
    fr_st_close(&f);
}

/* ---- malformed files ---------------------------------------------------- */

static void test_bad_sizes(void **state)
{
    unsigned char b[64];
    int fd;

    (void)state;
    memset(b, 0, sizeof b);
    write_bytes(tmp_path("empty"), b, 0);
    expect_open_fail(tmp_path("empty"), FR_EFORMAT, "too short");
    write_bytes(tmp_path("seven"), "\x02\0\0\0\0\0\0", 7);
    expect_open_fail(tmp_path("seven"), FR_EFORMAT, "file is 7 bytes, too short");

    /* The length says 100, the file holds 10 header bytes. */
    put_u64le(b, 100);
    memcpy(b + 8, "{}        ", 10);
    write_bytes(tmp_path("long"), b, 18);
    expect_open_fail(tmp_path("long"), FR_EFORMAT, "header length 100 exceeds the file size (18 bytes)");
    put_u64le(b, UINT64_C(1) << 63);
    write_bytes(tmp_path("huge"), b, 18);
    expect_open_fail(tmp_path("huge"), FR_EFORMAT, "header length 9223372036854775808 exceeds the file size");
    put_u64le(b, UINT64_MAX);
    write_bytes(tmp_path("max"), b, 18);
    expect_open_fail(tmp_path("max"), FR_EFORMAT, "exceeds the file size");

    /* Past the 100 MB limit in a (sparse) file that is long enough. */
    put_u64le(b, 100000001);
    write_bytes(tmp_path("limit"), b, 8);
    fd = open(tmp_path("limit"), O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 100000100), 0);
    assert_int_equal(close(fd), 0);
    expect_open_fail(tmp_path("limit"), FR_EFORMAT, "header length 100000001 exceeds the limit");
    assert_int_equal(unlink(tmp_path("limit")), 0);

    /* Not a file at all. */
    expect_open_fail(tmp_path("does-not-exist"), FR_EIO, "cannot open");
    expect_open_fail(tmpdir, FR_EIO, "not a regular file");
}

static void test_bad_json(void **state)
{
    static const char *const cases[][2] = {
        {"", "empty header"},
        {"   ", "empty header"},
        {"{\"a\":{\"dtype\":\"F32\"", "header is not valid JSON"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", "expected ',' or '}'"},
        {"{} x", "trailing characters"},
        {"{}{}", "trailing characters"},
        {"{\"a\\q\":1}", "bad escape '\\q'"},
        {"{\"a\\u12G4\":1}", "bad hex digit"},
        {"{\"a\\u12", "truncated \\u escape"},
        {"{\"\\udc00\":1}", "lone low surrogate"},
        {"{\"\\ud800x\":1}", "high surrogate"},
        {"{\"\\ud800\\u0041\":1}", "high surrogate"},
        {"{\"a\nb\":1}", "control character 0x0a"},
        {"{\"\xff\":1}", "invalid UTF-8"},
        {"{\"\xc0\xaf\":1}", "invalid UTF-8"},         /* overlong '/' */
        {"{\"\xed\xa0\x80\":1}", "invalid UTF-8"},     /* a surrogate in UTF-8 */
        {"{\"\xe2\x82\":1}", "invalid UTF-8"},         /* truncated sequence */
        {"{\"a\":01}", "leading zero"},
        {"{\"a\":1.}", "no digits after '.'"},
        {"{\"a\":1e}", "no digits in the exponent"},
        {"{\"a\":-}", "malformed number"},
        {"{\"a\":tru}", "invalid literal"},
        {"{\"a\":nul", "invalid literal"},
        {"{\"a\" 1}", "expected ':'"},
        {"{a:1}", "expected a string key"},
        {"{\"a\":[1,]}", "expected a value"},
        {"{\"a\":1,}", "expected a string key"},
        {"{\"a\":[1 2]}", "expected ',' or ']'"},
        {"\"unterminated", "unterminated string"},
        {"{\"a\\", "unterminated string"},
        {"{\"a\":\x01}", "expected a value but found byte 0x01"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_header_fail(cases[i][0], 0, cases[i][1]);
    /* A NUL byte inside the header text. */
    expect_open_fail(make_st("nul.safetensors", "{\"a\"\0:1}", 8, 0), FR_EFORMAT, "expected ':'");
}

static void test_deep_nesting(void **state)
{
    size_t n = 100000, i;
    char *h = malloc(n + 64);

    (void)state;
    assert_non_null(h);
    memset(h, '[', n);
    expect_open_fail(make_st("deep1", h, n, 0), FR_EFORMAT, "nesting deeper than");
    /* Nesting inside an otherwise valid header, and just inside the limit. */
    strcpy(h, "{\"__metadata__\":");
    for (i = 0; i < 100; i++)
        strcat(h, "{\"a\":");
    expect_open_fail(make_st_str("deep2", h, 0), FR_EFORMAT, "nesting deeper than");
    memset(h, '[', 64);
    memset(h + 64, ']', 64);
    expect_open_fail(make_st("deep3", h, 128, 0), FR_EFORMAT, "header is not a JSON object");
    memset(h, '[', 65);
    memset(h + 65, ']', 65);
    expect_open_fail(make_st("deep4", h, 130, 0), FR_EFORMAT, "nesting deeper than 64 levels");
    free(h);
}

static void test_bad_schema(void **state)
{
    static const char *const cases[][2] = {
        {"[1,2]", "header is not a JSON object"},
        {"\"x\"", "header is not a JSON object"},
        {"{\"a\":5}", "tensor 'a': entry is not a JSON object"},
        {"{\"a\":[]}", "tensor 'a': entry is not a JSON object"},
        {"{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", "tensor 'a': missing \"dtype\""},
        {"{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", "tensor 'a': missing \"shape\""},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", "tensor 'a': missing \"data_offsets\""},
        {"{\"a\":{}}", "tensor 'a': missing \"dtype\""},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"foo\":1}}",
         "tensor 'a': unknown key 'foo'"},
        {"{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
         "tensor 'a': duplicate key 'dtype'"},
        {"{\"w.x\":{\"dtype\":\"F17\",\"shape\":[1],\"data_offsets\":[0,4]}}", "tensor 'w.x': unknown dtype 'F17'"},
        {"{\"w.x\":{\"dtype\":\"I16\",\"shape\":[2],\"data_offsets\":[0,4]}}", "tensor 'w.x': unknown dtype 'I16'"},
        {"{\"w.x\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", "unknown dtype 'f32'"},
        {"{\"a\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}", "\"dtype\" is not a string"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,4]}}", "\"shape\" is not an array"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", "shape entry -1 is negative"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", "shape entry 2.0 is not an integer"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1e3],\"data_offsets\":[0,8]}}", "shape entry 1e3 is not an integer"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-0.5],\"data_offsets\":[0,8]}}", "is not an integer"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", "shape entry is not a number"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[null],\"data_offsets\":[0,4]}}", "shape entry is not a number"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,4]}}",
         "shape entry 99999999999999999999 is too large"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[9223372036854775808],\"data_offsets\":[0,4]}}", "is too large"},
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}",
         "more than 8 dimensions"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}",
         "shape [4294967296, 4294967296] of F32 overflows"},
        {"{\"a\":{\"dtype\":\"F64\",\"shape\":[9223372036854775807],\"data_offsets\":[0,4]}}", "overflows"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", "data_offsets [8, 4] are reversed"},
        {"{\"w.x\":{\"dtype\":\"F32\",\"shape\":[250],\"data_offsets\":[0,1000]}}",
         "tensor 'w.x': data_offsets [0, 1000] end past the data area (996 bytes)"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}",
         "shape [2] of F32 needs 8 bytes but data_offsets [0, 4] hold 4 (size mismatch)"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,8]}}", "size mismatch"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", "exactly 2 numbers"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[]}}", "exactly 2 numbers"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", "exactly 2 numbers"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":{\"b\":0}}}", "\"data_offsets\" is not an array"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", "data_offsets entry -4 is negative"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,18446744073709551620]}}", "is too large"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
         "tensors 'a' and 'b' overlap: data_offsets [0, 8] and [4, 12]"},
        /* Overlap with a tensor that is not the previous one by name. */
        {"{\"a\":{\"dtype\":\"U8\",\"shape\":[100],\"data_offsets\":[0,100]},"
         "\"b\":{\"dtype\":\"U8\",\"shape\":[10],\"data_offsets\":[200,210]},"
         "\"c\":{\"dtype\":\"U8\",\"shape\":[10],\"data_offsets\":[50,60]}}",
         "tensors 'a' and 'c' overlap: data_offsets [0, 100] and [50, 60]"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
         "overlap"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
         "duplicate tensor name 'a'"},
        {"{\"\\u0061\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
         "duplicate tensor name 'a'"},
        {"{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", "NUL character"},
        {"{\"__metadata__\":[1]}", "'__metadata__' is not an object"},
        {"{\"__metadata__\":\"x\"}", "'__metadata__' is not an object"},
        {"{\"__metadata__\":{\"k\":1}}", "'__metadata__' value of key 'k' is not a string"},
        {"{\"__metadata__\":{\"k\":{\"a\":\"b\"}}}", "is not a string"},
        {"{\"__metadata__\":{},\"__metadata__\":{}}", "duplicate '__metadata__'"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_header_fail(cases[i][0], 996, cases[i][1]);
}

/* A valid file cut short anywhere must fail cleanly. */
static void test_truncated_files(void **state)
{
    const char *hdr = "{\"__metadata__\":{\"k\":\"v\"},"
                      "\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                      "\"b\":{\"dtype\":\"I64\",\"shape\":[3],\"data_offsets\":[16,40]}}";
    const char *path = make_st_str("full.safetensors", hdr, 40);
    unsigned char *buf;
    size_t full = 8 + strlen(hdr) + 40, cut;
    FILE *fp;
    fr_st f;
    fr_err e;

    (void)state;
    assert_int_equal(fr_st_open(&f, path, &e), FR_OK);
    fr_st_close(&f);
    buf = malloc(full);
    assert_non_null(buf);
    fp = fopen(path, "rb");
    assert_non_null(fp);
    assert_int_equal(fread(buf, 1, full, fp), full);
    assert_int_equal(fclose(fp), 0);
    for (cut = 0; cut < full; cut++) {
        const char *phrase = cut < 8                  ? "too short"
                             : cut < 8 + strlen(hdr)  ? "exceeds the file size"
                             : cut < 8 + strlen(hdr) + 16 ? "end past the data area"
                                                          : "tensor 'b': data_offsets [16, 40] end past the data area";
        write_bytes(tmp_path("cut.safetensors"), buf, cut);
        expect_open_fail(tmp_path("cut.safetensors"), FR_EFORMAT, phrase);
    }
    free(buf);
}

/* Every single-byte change of a valid header either still opens or fails
 * with FR_EFORMAT; none crashes (run under ASan to mean something). */
static void test_mutated_headers(void **state)
{
    static const char repl[] = {'"', '{', '}', '[', ']', ',', ':', '\\', '0', '9', '-', 'e', ' ', 'x', '\0', (char)0xff, (char)0xc3};
    const char *hdr = "{\"__metadata__\":{\"k\":\"v\\u00e9\"},"
                      "\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                      "\"b\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[16,19]},"
                      "\"c\":{\"dtype\":\"BF16\",\"shape\":[0,7],\"data_offsets\":[19,19]}}";
    size_t hl = strlen(hdr), i, r;
    char *h = malloc(hl);
    int ok = 0, bad = 0;

    (void)state;
    assert_non_null(h);
    for (i = 0; i < hl; i++)
        for (r = 0; r < sizeof repl; r++) {
            fr_st f;
            fr_err e;
            int rc;
            memcpy(h, hdr, hl);
            h[i] = repl[r];
            rc = fr_st_open(&f, make_st("mut.safetensors", h, hl, 24), &e);
            if (rc == FR_OK) {
                ok++;
                fr_st_close(&f);
            } else {
                if (rc != FR_EFORMAT)
                    fail_msg("byte %zu -> 0x%02x: code %d: %s", i, (unsigned char)repl[r], rc, e.msg);
                bad++;
            }
        }
    free(h);
    assert_true(ok > 0 && bad > ok);
}

/* ---- valid but unusual files -------------------------------------------- */

static void test_unusual_valid(void **state)
{
    /* Escaped names, whitespace, gaps between tensors, an empty tensor, a
     * scalar, BOOL/BF16/I8, and an F32 tensor the file places misaligned. */
    const char *hdr =
        " {\n\t\"w.\\u00e9\\ud83d\\ude00\" : {\"data_offsets\":[0,1],\"shape\":[1],\"dtype\":\"BOOL\"},"
        "\"q\\\"\\\\/\\/\":{\"dtype\":\"I8\",\"shape\":[2],\"data_offsets\":[1,3]},"
        "\"mis\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[3,11]},"
        "\"empty\":{\"dtype\":\"F64\",\"shape\":[0,3],\"data_offsets\":[5,5]},"
        "\"scalar\":{\"dtype\":\"BF16\",\"shape\":[],\"data_offsets\":[14,16]},"
        "\"__metadata__\":{}}  \r\n"; /* 335 bytes: the data area starts at 343 */
    const char *path = make_st_str("unusual.safetensors", hdr, 20);
    const fr_tensor *t;
    unsigned char expect[8];
    fr_st f;
    fr_err e;

    (void)state;
    if (fr_st_open(&f, path, &e) != FR_OK)
        fail_msg("%s", e.msg);
    assert_int_equal(f.ntensors, 5);
    assert_string_equal(f.metadata_json, "{}");
    /* Byte order of the names: 'e' < 'm' < 'q' < 's' < 'w'. */
    assert_string_equal(f.tensors[0].name, "empty");
    assert_string_equal(f.tensors[2].name, "q\"\\//");
    assert_string_equal(f.tensors[4].name, "w.\xc3\xa9\xf0\x9f\x98\x80");
    t = must_find(&f, "w.\xc3\xa9\xf0\x9f\x98\x80");
    assert_int_equal(t->dtype, FR_BOOL);
    assert_int_equal(((const unsigned char *)t->data)[0], 0); /* data byte 0 holds 0 */
    t = must_find(&f, "q\"\\//");
    assert_int_equal(((const signed char *)t->data)[1], 2);
    /* The header is 8-aligned only by accident; the data area starts at
     * 8 + hlen, and "mis" at +3 of it: the reader copies it to be aligned. */
    t = must_find(&f, "mis");
    assert_int_equal((uintptr_t)t->data % 4, 0);
    expect[0] = 3, expect[1] = 4, expect[2] = 5, expect[3] = 6;
    expect[4] = 7, expect[5] = 8, expect[6] = 9, expect[7] = 10;
    assert_memory_equal(t->data, expect, 8);
    assert_non_null(f.owned);
    t = must_find(&f, "empty");
    assert_int_equal(t->nbytes, 0);
    assert_int_equal(t->rank, 2);
    t = must_find(&f, "scalar");
    assert_int_equal(t->rank, 0);
    assert_int_equal(t->nbytes, 2);
    assert_int_equal((uintptr_t)t->data % 2, 0);
    assert_int_equal(((const unsigned char *)t->data)[0], 14);
    {
        const void *p;
        assert_int_equal(fr_st_bind(&f, "", "mis", FR_F32, 1, (const int64_t[]){2}, &p, &e), FR_OK);
        assert_ptr_equal(p, must_find(&f, "mis")->data);
        assert_int_equal(fr_st_bind(&f, "", "scalar", FR_BF16, 0, NULL, &p, &e), FR_OK);
    }
    fr_st_close(&f);

    /* No tensors at all. */
    path = make_st_str("none.safetensors", "{}      ", 0);
    assert_int_equal(fr_st_open(&f, path, &e), FR_OK);
    assert_int_equal(f.ntensors, 0);
    assert_null(f.metadata_json);
    assert_null(fr_st_find(&f, "a"));
    assert_int_equal(fr_st_bind(&f, "", "a", FR_F32, 0, NULL, &(const void *){NULL}, &e), FR_ENOTFOUND);
    fr_st_close(&f);
}

static void test_null_args(void **state)
{
    fr_st f;
    fr_err e;

    (void)state;
    assert_int_equal(fr_st_open(NULL, "x", &e), FR_EINVAL);
    assert_int_equal(fr_st_open(&f, NULL, &e), FR_EINVAL);
    assert_int_equal(fr_st_open(&f, "/nonexistent/x.safetensors", NULL), FR_EIO);
    memset(&f, 0, sizeof f);
    fr_st_close(&f);
    fr_st_close(NULL);
    assert_null(fr_st_find(NULL, "x"));
    assert_null(fr_st_find(&f, "x"));
}

/* ---- writer ------------------------------------------------------------- */

static void test_writer_round_trip(void **state)
{
    static const float a[6] = {1.5f, -2.0f, 3.25f, 0.0f, -0.0f, 1e-30f};
    static const int32_t b[4] = {7, -8, 2147483647, -2147483647 - 1};
    static const unsigned char c[3] = {1, 0, 255};
    static const double d[2] = {3.141592653589793, -1e300};
    static const int64_t s23[2] = {2, 3}, s4[1] = {4}, s3[1] = {3}, s2[1] = {2}, s05[2] = {0, 5};
    const char *path = tmp_path("rt.safetensors");
    fr_st_writer *w = fr_stw_new();
    const fr_tensor *t;
    fr_st f;
    fr_err e;
    int i;

    (void)state;
    assert_non_null(w);
    assert_int_equal(fr_stw_add(w, "z.a", FR_F32, 2, s23, a, &e), FR_OK);
    assert_int_equal(fr_stw_add(w, "b", FR_I32, 1, s4, b, &e), FR_OK);
    assert_int_equal(fr_stw_add(w, "c \"q\" \\ \n\xc3\xa9", FR_U8, 1, s3, c, &e), FR_OK);
    assert_int_equal(fr_stw_add(w, "d", FR_F64, 1, s2, d, &e), FR_OK);
    assert_int_equal(fr_stw_add(w, "empty", FR_F32, 2, s05, NULL, &e), FR_OK);
    assert_int_equal(fr_stw_add(w, "scalar", FR_F32, 0, NULL, &a[2], &e), FR_OK);
    if (fr_stw_write(w, path, &e) != FR_OK)
        fail_msg("%s", e.msg);
    fr_stw_free(w);
    assert_int_equal(count_files_with(".tmp."), 0);

    if (fr_st_open(&f, path, &e) != FR_OK)
        fail_msg("%s", e.msg);
    assert_int_equal(f.ntensors, 6);
    assert_null(f.owned); /* the writer keeps every tensor aligned in the file */
    t = must_find(&f, "z.a");
    assert_shape(t, FR_F32, 2, 2, 3);
    assert_memory_equal(t->data, a, sizeof a);
    t = must_find(&f, "b");
    assert_shape(t, FR_I32, 1, 4, 0);
    assert_memory_equal(t->data, b, sizeof b);
    t = must_find(&f, "c \"q\" \\ \n\xc3\xa9");
    assert_shape(t, FR_U8, 1, 3, 0);
    assert_memory_equal(t->data, c, sizeof c);
    t = must_find(&f, "d");
    assert_shape(t, FR_F64, 1, 2, 0);
    assert_memory_equal(t->data, d, sizeof d);
    t = must_find(&f, "empty");
    assert_int_equal(t->rank, 2);
    assert_int_equal(t->shape[1], 5);
    assert_int_equal(t->nbytes, 0);
    t = must_find(&f, "scalar");
    assert_int_equal(t->rank, 0);
    assert_true(*(const float *)t->data == 3.25f);
    for (i = 0; i < f.ntensors; i++)
        assert_int_equal((uintptr_t)f.tensors[i].data % fr_dtype_size(f.tensors[i].dtype), 0);
    fr_st_close(&f);
}

static char *read_file(const char *path, size_t *n)
{
    FILE *fp = fopen(path, "rb");
    char *buf = malloc(1 << 16);

    assert_non_null(fp);
    assert_non_null(buf);
    *n = fread(buf, 1, 1 << 16, fp);
    assert_int_equal(fclose(fp), 0);
    return buf;
}

/* The exact bytes of a small file, worked out by hand. */
static void test_writer_exact_bytes(void **state)
{
    /* F32 sorts before U8 in the data (larger elements first), names sort
     * "a" < "b" in the header; 106 bytes of JSON pad to 112. */
    static const char hdr[] = "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[4,6]},"
                              "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}      ";
    static const float one = 1.0f;
    static const unsigned char two[2] = {9, 8};
    static const int64_t s1[1] = {1}, s2[1] = {2};
    unsigned char expect[8 + 112 + 6];
    fr_st_writer *w1 = fr_stw_new(), *w2 = fr_stw_new();
    char *got1, *got2;
    size_t n1, n2;
    fr_err e;

    (void)state;
    assert_int_equal(sizeof hdr - 1, 112);
    put_u64le(expect, 112);
    memcpy(expect + 8, hdr, 112);
    memcpy(expect + 120, &one, 4);
    memcpy(expect + 124, two, 2);
    assert_int_equal(fr_stw_add(w1, "b", FR_F32, 1, s1, &one, &e), FR_OK);
    assert_int_equal(fr_stw_add(w1, "a", FR_U8, 1, s2, two, &e), FR_OK);
    assert_int_equal(fr_stw_write(w1, tmp_path("x1"), &e), FR_OK);
    /* The same tensors added in the other order: the same bytes. */
    assert_int_equal(fr_stw_add(w2, "a", FR_U8, 1, s2, two, &e), FR_OK);
    assert_int_equal(fr_stw_add(w2, "b", FR_F32, 1, s1, &one, &e), FR_OK);
    assert_int_equal(fr_stw_write(w2, tmp_path("x2"), &e), FR_OK);
    fr_stw_free(w1);
    fr_stw_free(w2);
    got1 = read_file(tmp_path("x1"), &n1);
    got2 = read_file(tmp_path("x2"), &n2);
    assert_int_equal(n1, sizeof expect);
    assert_memory_equal(got1, expect, sizeof expect);
    assert_int_equal(n2, n1);
    assert_memory_equal(got1, got2, n1);
    free(got1);
    free(got2);

    /* An empty writer gives "{}" and six spaces. */
    w1 = fr_stw_new();
    assert_int_equal(fr_stw_write(w1, tmp_path("x3"), &e), FR_OK);
    fr_stw_free(w1);
    got1 = read_file(tmp_path("x3"), &n1);
    assert_int_equal(n1, 16);
    assert_memory_equal(got1, "\x08\0\0\0\0\0\0\0{}      ", 16);
    free(got1);
}

/* An independent reader: Python's json and numpy parse what we wrote. */
static void test_writer_python_reads_it(void **state)
{
    static const float a[6] = {0.5f, -1.25f, 2.0f, 3.0f, 4.0f, -5.5f};
    static const int64_t big[3] = {INT64_C(-9000000000), 1, 2};
    static const int64_t s23[2] = {2, 3}, s3[1] = {3};
    const char *path = tmp_path("py.safetensors");
    char cmd[2048];
    fr_st_writer *w;
    fr_err e;
    int rc;

    (void)state;
    if (access("/usr/bin/python3", X_OK) != 0 ||
        system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") != 0)
        fail_msg("/usr/bin/python3 with numpy is missing: run scripts/install-deps.sh");
    w = fr_stw_new();
    assert_int_equal(fr_stw_add(w, "m.weight", FR_F32, 2, s23, a, &e), FR_OK);
    assert_int_equal(fr_stw_add(w, "ids", FR_I64, 1, s3, big, &e), FR_OK);
    assert_int_equal(fr_stw_write(w, path, &e), FR_OK);
    fr_stw_free(w);
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c '\n"
             "import json, struct, sys, numpy as np\n"
             "b = open(sys.argv[1], \"rb\").read()\n"
             "n = struct.unpack(\"<Q\", b[:8])[0]\n"
             "assert n %% 8 == 0, n\n"
             "h = json.loads(b[8:8 + n])\n"
             "assert list(h) == [\"ids\", \"m.weight\"], list(h)\n"
             "def t(k, dt):\n"
             "    s, e = h[k][\"data_offsets\"]\n"
             "    return np.frombuffer(b[8 + n + s:8 + n + e], dtype=dt).reshape(h[k][\"shape\"])\n"
             "assert h[\"m.weight\"][\"dtype\"] == \"F32\" and h[\"ids\"][\"dtype\"] == \"I64\"\n"
             "assert (t(\"m.weight\", \"<f4\") == np.array([[0.5, -1.25, 2], [3, 4, -5.5]], \"f4\")).all()\n"
             "assert t(\"ids\", \"<i8\").tolist() == [-9000000000, 1, 2]\n"
             "assert 8 + n + max(v[\"data_offsets\"][1] for v in h.values()) == len(b)\n"
             "' %s",
             path);
    rc = system(cmd);
    assert_true(WIFEXITED(rc));
    assert_int_equal(WEXITSTATUS(rc), 0);
}

static void test_writer_bad_adds(void **state)
{
    static const float x[4] = {0};
    static const int64_t s2[1] = {2}, neg[1] = {-1}, huge[2] = {INT64_MAX, 4};
    fr_st_writer *w = fr_stw_new();
    fr_err e;

    (void)state;
    assert_int_equal(fr_stw_add(w, "__metadata__", FR_F32, 1, s2, x, &e), FR_EINVAL);
    assert_int_equal(fr_stw_add(w, "bad\xff", FR_F32, 1, s2, x, &e), FR_EINVAL);
    assert_int_equal(fr_stw_add(w, "a", FR_NDTYPES, 1, s2, x, &e), FR_EINVAL);
    assert_int_equal(fr_stw_add(w, "a", FR_F32, FR_MAX_RANK + 1, s2, x, &e), FR_EINVAL);
    assert_int_equal(fr_stw_add(w, "a", FR_F32, -1, s2, x, &e), FR_EINVAL);
    assert_int_equal(fr_stw_add(w, "a", FR_F32, 1, NULL, x, &e), FR_EINVAL);
    assert_int_equal(fr_stw_add(w, "a", FR_F32, 1, neg, x, &e), FR_EINVAL);
    assert_non_null(strstr(e.msg, "negative dimension -1"));
    assert_int_equal(fr_stw_add(w, "a", FR_F32, 2, huge, x, &e), FR_EINVAL);
    assert_int_equal(fr_stw_add(w, "a", FR_F32, 1, s2, NULL, &e), FR_EINVAL);
    assert_int_equal(fr_stw_add(w, NULL, FR_F32, 1, s2, x, &e), FR_EINVAL);
    assert_int_equal(fr_stw_add(NULL, "a", FR_F32, 1, s2, x, &e), FR_EINVAL);
    /* Duplicates are found when writing; nothing is written. */
    assert_int_equal(fr_stw_add(w, "a", FR_F32, 1, s2, x, &e), FR_OK);
    assert_int_equal(fr_stw_add(w, "a", FR_F32, 1, s2, x, &e), FR_OK);
    assert_int_equal(fr_stw_write(w, tmp_path("dup.safetensors"), &e), FR_EINVAL);
    assert_non_null(strstr(e.msg, "tensor 'a' added twice"));
    assert_int_equal(access(tmp_path("dup.safetensors"), F_OK), -1);
    assert_int_equal(fr_stw_write(w, NULL, &e), FR_EINVAL);
    assert_int_equal(fr_stw_write(NULL, tmp_path("x"), &e), FR_EINVAL);
    fr_stw_free(w);
    fr_stw_free(NULL);
}

static fr_st_writer *small_writer(const float *data, int64_t n)
{
    fr_st_writer *w = fr_stw_new();
    fr_err e;

    assert_non_null(w);
    assert_int_equal(fr_stw_add(w, "x", FR_F32, 1, &n, data, &e), FR_OK);
    return w;
}

static void test_writer_failures_leave_no_file(void **state)
{
    static float data[4096];
    char path[300];
    fr_st_writer *w = small_writer(data, 4);
    struct rlimit old, lim;
    struct stat sb;
    size_t n;
    char *got;
    fr_err e;

    (void)state;
    /* A folder that does not exist. */
    snprintf(path, sizeof path, "%s/no/such/dir/out.safetensors", tmpdir);
    assert_int_equal(fr_stw_write(w, path, &e), FR_EIO);
    assert_non_null(strstr(e.msg, "cannot create a temporary file"));
    assert_non_null(strstr(e.msg, path));
    /* A "folder" that is a regular file (works as root, unlike chmod). */
    write_bytes(tmp_path("plain"), "x", 1);
    snprintf(path, sizeof path, "%s/plain/out.safetensors", tmpdir);
    assert_int_equal(fr_stw_write(w, path, &e), FR_EIO);
    /* The target is a folder: the rename fails, the folder and nothing else remain. */
    assert_int_equal(mkdir(tmp_path("adir"), 0755), 0);
    assert_int_equal(fr_stw_write(w, tmp_path("adir"), &e), FR_EIO);
    assert_non_null(strstr(e.msg, "cannot rename"));
    assert_int_equal(stat(tmp_path("adir"), &sb), 0);
    assert_true(S_ISDIR(sb.st_mode));
    assert_int_equal(rmdir(tmp_path("adir")), 0);
    assert_int_equal(count_files_with(".tmp."), 0);
    fr_stw_free(w);

    /* A write that fails half-way (the file-size limit) leaves the old file
     * as it was and no temporary file behind. */
    write_bytes(tmp_path("keep.safetensors"), "old contents", 12);
    w = small_writer(data, 4096);
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 1000;
    assert_true(signal(SIGXFSZ, SIG_IGN) != SIG_ERR);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    n = (size_t)fr_stw_write(w, tmp_path("keep.safetensors"), &e);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    assert_true(signal(SIGXFSZ, SIG_DFL) != SIG_ERR);
    assert_int_equal((int)n, FR_EIO);
    assert_non_null(strstr(e.msg, "cannot write"));
    got = read_file(tmp_path("keep.safetensors"), &n);
    assert_int_equal(n, 12);
    assert_memory_equal(got, "old contents", 12);
    free(got);
    assert_int_equal(count_files_with(".tmp."), 0);
    /* Without the limit the same write replaces the file. */
    assert_int_equal(fr_stw_write(w, tmp_path("keep.safetensors"), &e), FR_OK);
    assert_int_equal(stat(tmp_path("keep.safetensors"), &sb), 0);
    assert_int_equal(sb.st_size, 8 + 64 + 4 * 4096);
    fr_stw_free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_llama),
        cmocka_unit_test(test_golden_gpt2),
        cmocka_unit_test(test_bind_golden),
        cmocka_unit_test(test_bad_sizes),
        cmocka_unit_test(test_bad_json),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_bad_schema),
        cmocka_unit_test(test_truncated_files),
        cmocka_unit_test(test_mutated_headers),
        cmocka_unit_test(test_unusual_valid),
        cmocka_unit_test(test_null_args),
        cmocka_unit_test(test_writer_round_trip),
        cmocka_unit_test(test_writer_exact_bytes),
        cmocka_unit_test(test_writer_python_reads_it),
        cmocka_unit_test(test_writer_bad_adds),
        cmocka_unit_test(test_writer_failures_leave_no_file),
    };
    return cmocka_run_group_tests(tests, setup_tmpdir, teardown_tmpdir);
}
