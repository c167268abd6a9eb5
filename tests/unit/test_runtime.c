/*
 * test_runtime.c - the runtime's small pieces: errors, aligned allocation,
 * dtypes, the thread-count setting, block shapes and binding, the clock.
 *
 * Expected values are worked out by hand in the comments next to them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "fusec_rt.h"

/* ---- errors ------------------------------------------------------------ */

static void test_seterr(void **state)
{
    fr_err e;
    char big[700];

    (void)state;
    assert_int_equal(fr_seterr(&e, FR_ESHAPE, "tensor '%s': %d", "x", 42), FR_ESHAPE);
    assert_int_equal(e.code, FR_ESHAPE);
    assert_string_equal(e.msg, "tensor 'x': 42");
    assert_int_equal(fr_seterr(NULL, FR_EIO, "ignored %d", 1), FR_EIO);
    /* A message longer than the buffer is cut, not overrun. */
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    fr_seterr(&e, FR_EINVAL, "%s", big);
    assert_int_equal(strlen(e.msg), sizeof e.msg - 1);
}

/* ---- memory ------------------------------------------------------------ */

static void test_alloc_aligned_zeroed(void **state)
{
    static const size_t sizes[] = {1, 3, 63, 64, 65, 1000, 4096, 1 << 20};
    size_t i, k;

    (void)state;
    for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        unsigned char *p = fr_alloc(sizes[i]);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % FR_ALIGN, 0);
        for (k = 0; k < sizes[i]; k++)
            if (p[k] != 0)
                fail_msg("fr_alloc(%zu): byte %zu is %d, not 0", sizes[i], k, p[k]);
        /* The size is rounded up to whole 64-byte lines, so the last line is
         * ours too (a vector load of a row tail stays inside). */
        memset(p, 0xab, (sizes[i] + 63) / 64 * 64);
        fr_free(p);
    }
}

static void test_alloc_rejects_bad_sizes(void **state)
{
    (void)state;
    assert_null(fr_alloc(0));
    assert_null(fr_alloc(SIZE_MAX));
    assert_null(fr_alloc(SIZE_MAX - 10)); /* rounding up would wrap */
    fr_free(NULL);
}

/* ---- dtypes ------------------------------------------------------------ */

static void test_dtypes(void **state)
{
    (void)state;
    assert_string_equal(fr_dtype_name(FR_F32), "F32");
    assert_string_equal(fr_dtype_name(FR_F64), "F64");
    assert_string_equal(fr_dtype_name(FR_I32), "I32");
    assert_string_equal(fr_dtype_name(FR_I64), "I64");
    assert_string_equal(fr_dtype_name(FR_F16), "F16");
    assert_string_equal(fr_dtype_name(FR_BF16), "BF16");
    assert_string_equal(fr_dtype_name(FR_U8), "U8");
    assert_string_equal(fr_dtype_name(FR_I8), "I8");
    assert_string_equal(fr_dtype_name(FR_BOOL), "BOOL");
    assert_int_equal(fr_dtype_size(FR_F32), 4);
    assert_int_equal(fr_dtype_size(FR_F64), 8);
    assert_int_equal(fr_dtype_size(FR_I32), 4);
    assert_int_equal(fr_dtype_size(FR_I64), 8);
    assert_int_equal(fr_dtype_size(FR_F16), 2);
    assert_int_equal(fr_dtype_size(FR_BF16), 2);
    assert_int_equal(fr_dtype_size(FR_U8), 1);
    assert_int_equal(fr_dtype_size(FR_I8), 1);
    assert_int_equal(fr_dtype_size(FR_BOOL), 1);
    assert_string_equal(fr_dtype_name(FR_NDTYPES), "?");
    assert_string_equal(fr_dtype_name((fr_dtype)-1), "?");
    assert_int_equal(fr_dtype_size(FR_NDTYPES), 0);
}

/* ---- threads ----------------------------------------------------------- */

static int threads_with_env(const char *value)
{
    if (value)
        assert_int_equal(setenv("FUSE_NUM_THREADS", value, 1), 0);
    else
        assert_int_equal(unsetenv("FUSE_NUM_THREADS"), 0);
    return fr_get_num_threads();
}

static void test_num_threads_env(void **state)
{
    (void)state;
    fr_set_num_threads(0);
    assert_int_equal(threads_with_env(NULL), 1);
    assert_int_equal(threads_with_env("4"), 4);
    assert_int_equal(threads_with_env(" 8 "), 8);
    assert_int_equal(threads_with_env("+2"), 2);
    assert_int_equal(threads_with_env("1024"), 1024);
    /* Garbage and values below 1 mean one thread. */
    assert_int_equal(threads_with_env(""), 1);
    assert_int_equal(threads_with_env("abc"), 1);
    assert_int_equal(threads_with_env("4x"), 1);
    assert_int_equal(threads_with_env("0x10"), 1);
    assert_int_equal(threads_with_env("2.5"), 1);
    assert_int_equal(threads_with_env("0"), 1);
    assert_int_equal(threads_with_env("-3"), 1);
    assert_int_equal(threads_with_env("-99999999999999999999999"), 1);
    /* Large requests are capped. */
    assert_int_equal(threads_with_env("1025"), 1024);
    assert_int_equal(threads_with_env("5000"), 1024);
    assert_int_equal(threads_with_env("99999999999999999999999"), 1024);
    unsetenv("FUSE_NUM_THREADS");
}

static void test_num_threads_set(void **state)
{
    (void)state;
    assert_int_equal(setenv("FUSE_NUM_THREADS", "6", 1), 0);
    fr_set_num_threads(3);
    assert_int_equal(fr_get_num_threads(), 3); /* the call wins over the variable */
    fr_set_num_threads(100000);
    assert_int_equal(fr_get_num_threads(), 1024);
    fr_set_num_threads(0); /* forgets the setting */
    assert_int_equal(fr_get_num_threads(), 6);
    fr_set_num_threads(-5);
    assert_int_equal(fr_get_num_threads(), 6);
    unsetenv("FUSE_NUM_THREADS");
    assert_int_equal(fr_get_num_threads(), 1);
}

/* ---- block shapes ------------------------------------------------------ */

/* f32[T, P + T, 2*H + 1] with symbols (T, P, H). */
static fr_tensor_desc desc_tph(void)
{
    fr_tensor_desc d;

    memset(&d, 0, sizeof d);
    d.name = "x";
    d.dtype = FR_F32;
    d.rank = 3;
    d.shape_k[0][0] = 1;
    d.shape_k[1][0] = 1;
    d.shape_k[1][1] = 1;
    d.shape_c[2] = 1;
    d.shape_k[2][2] = 2;
    return d;
}

static void test_desc_shape_symbols(void **state)
{
    fr_tensor_desc d = desc_tph();
    int64_t syms[3] = {5, 7, 3};
    int64_t shape[FR_MAX_RANK];

    (void)state;
    fr_desc_shape(&d, syms, shape);
    assert_int_equal(shape[0], 5);  /* T */
    assert_int_equal(shape[1], 12); /* P + T = 7 + 5 */
    assert_int_equal(shape[2], 7);  /* 2*3 + 1 */
    assert_int_equal(fr_desc_numel(&d, syms), 5 * 12 * 7);
    syms[0] = 0;
    assert_int_equal(fr_desc_numel(&d, syms), 0);
    /* Negative dims and products past int64 are not sizes. */
    d.shape_c[2] = -10; /* 2*3 - 10 = -4 */
    syms[0] = 5;
    assert_int_equal(fr_desc_numel(&d, syms), -1);
    d.shape_c[2] = 1;
    syms[0] = INT64_C(1) << 31;
    syms[1] = INT64_C(1) << 31;
    syms[2] = INT64_C(1) << 30; /* 2^31 * 2^32 * (2^31 + 1) overflows */
    assert_int_equal(fr_desc_numel(&d, syms), -1);
    /* A coefficient times a symbol past int64 gives -1, not undefined behaviour. */
    syms[2] = INT64_MAX;
    fr_desc_shape(&d, syms, shape);
    assert_int_equal(shape[2], -1);
}

static void test_desc_shape_reads_only_used_symbols(void **state)
{
    fr_tensor_desc d;
    int64_t *one = malloc(sizeof *one); /* one symbol: a read past it trips ASan */
    int64_t shape[FR_MAX_RANK];

    (void)state;
    assert_non_null(one);
    memset(&d, 0, sizeof d);
    d.rank = 2;
    d.shape_k[0][0] = 1;
    d.shape_c[1] = 256;
    *one = 13;
    fr_desc_shape(&d, one, shape);
    assert_int_equal(shape[0], 13);
    assert_int_equal(shape[1], 256);
    free(one);
    /* No symbols: NULL is fine, and constants are the shape. */
    d.shape_k[0][0] = 0;
    d.shape_c[0] = 4;
    fr_desc_shape(&d, NULL, shape);
    assert_int_equal(shape[0], 4);
    assert_int_equal(fr_desc_numel(&d, NULL), 1024);
    d.rank = 0;
    assert_int_equal(fr_desc_numel(&d, NULL), 1); /* a scalar */
}

/* ---- binding a block --------------------------------------------------- */

static char tmpdir[64];

static int make_tmpdir(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/fr_rt_test.XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int remove_tmpdir(void **state)
{
    char path[128];

    (void)state;
    snprintf(path, sizeof path, "%s/block.safetensors", tmpdir);
    unlink(path); /* absent when the test failed before writing it */
    return rmdir(tmpdir);
}

static void test_bind_block(void **state)
{
    static const float wq[6] = {1, 2, 3, 4, 5, 6};
    static const float ln[3] = {0.5f, 0.25f, 0.125f};
    static const int64_t sq[2] = {2, 3}, sl[1] = {3};
    fr_tensor_desc w[2];
    fr_block_desc b;
    const void *bound[2];
    char path[128];
    fr_st_writer *wr;
    fr_st f;
    fr_err e;

    (void)state;
    snprintf(path, sizeof path, "%s/block.safetensors", tmpdir);
    wr = fr_stw_new();
    assert_non_null(wr);
    assert_int_equal(fr_stw_add(wr, "layers.0.q.weight", FR_F32, 2, sq, wq, &e), FR_OK);
    assert_int_equal(fr_stw_add(wr, "layers.0.ln.weight", FR_F32, 1, sl, ln, &e), FR_OK);
    assert_int_equal(fr_stw_write(wr, path, &e), FR_OK);
    fr_stw_free(wr);
    assert_int_equal(fr_st_open(&f, path, &e), FR_OK);

    memset(w, 0, sizeof w);
    w[0].name = "q.weight";
    w[0].dtype = FR_F32;
    w[0].rank = 2;
    w[0].shape_c[0] = 2;
    w[0].shape_c[1] = 3;
    w[1].name = "ln.weight";
    w[1].dtype = FR_F32;
    w[1].rank = 1;
    w[1].shape_c[0] = 3;
    memset(&b, 0, sizeof b);
    b.name = "tiny";
    b.nweights = 2;
    b.weights = w;

    assert_int_equal(fr_bind_block(&b, &f, "layers.0.", bound, &e), FR_OK);
    assert_ptr_equal(bound[0], fr_st_find(&f, "layers.0.q.weight")->data);
    assert_true(((const float *)bound[0])[5] == 6.0f);
    assert_true(((const float *)bound[1])[2] == 0.125f);

    /* A missing weight: an error naming it, and no half-bound table. */
    assert_int_equal(fr_bind_block(&b, &f, "layers.1.", bound, &e), FR_ENOTFOUND);
    assert_non_null(strstr(e.msg, "layers.1.q.weight"));
    assert_null(bound[0]);
    assert_null(bound[1]);

    /* A wrong shape in the second weight clears the first, too. */
    w[1].shape_c[0] = 4;
    assert_int_equal(fr_bind_block(&b, &f, "layers.0.", bound, &e), FR_ESHAPE);
    assert_non_null(strstr(e.msg, "shape [3], block expects [4]"));
    assert_null(bound[0]);
    w[1].shape_c[0] = 3;

    /* Weights cannot depend on symbols. */
    w[1].shape_k[0][0] = 1;
    assert_int_equal(fr_bind_block(&b, &f, "layers.0.", bound, &e), FR_EINVAL);
    assert_non_null(strstr(e.msg, "symbolic shape"));
    assert_non_null(strstr(e.msg, "ln.weight"));
    assert_null(bound[0]);

    fr_st_close(&f);
}

/* ---- clock ------------------------------------------------------------- */

/* ---- JSON ------------------------------------------------------------------ */

static const char *json_file(const char *text)
{
    static char path[128];
    snprintf(path, sizeof path, "/tmp/fr_json_test.%d.json", (int)getpid());
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static void test_json(void **state)
{
    fr_json j;
    fr_err e;
    (void)state;
    const char *p = json_file("{\"a\": {\"b\": [1, -2.5e3, true, null]}, \"s\": \"x\\u00e9\\n\", "
                              "\"n\": 1, \"n\": 2}");
    assert_int_equal(fr_json_load(&j, p, &e), FR_OK);
    const fr_json *a = fr_json_get(&j, "a"), *b = fr_json_get(a, "b");
    assert_non_null(b);
    assert_int_equal(b->type, FR_JSON_ARR);
    assert_int_equal(b->n, 4);
    assert_true(b->items[1].num == -2500.0);
    assert_int_equal(b->items[2].type, FR_JSON_BOOL);
    assert_true(b->items[2].num == 1);
    assert_int_equal(b->items[3].type, FR_JSON_NULL);
    assert_string_equal(fr_json_get(&j, "s")->str, "x\xc3\xa9\n");    /* U+00E9 in UTF-8 */
    assert_true(fr_json_get(&j, "n")->num == 2);                       /* the last of a repeated key */
    assert_null(fr_json_get(&j, "missing"));
    assert_null(fr_json_get(b, "b"));                                  /* not an object */
    fr_json_free(&j);

    /* errors name the line and column */
    static const char *const bad[][2] = {
        {"{\"a\": 1,}", ":1:9: expected a key string"},
        {"[1, 2", ":1:6: expected ',' or ']'"},
        {"{\"a\" 1}", ":1:6: expected ':'"},
        {"\"abc", ":1:5: unterminated string"},
        {"{}\n x", ":2:2: text after the JSON value"},
        {"[1e999999999999999999999999999999999999999999999999999999999999999999]", "bad number"},
        {"", ":1:1: unexpected end of the file"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        p = json_file(bad[i][0]);
        assert_int_equal(fr_json_load(&j, p, &e), FR_EFORMAT);
        if (!strstr(e.msg, bad[i][1]))
            fail_msg("'%s': got '%s', expected '%s'", bad[i][0], e.msg, bad[i][1]);
    }
    /* nesting beyond 64 is refused, not a stack overflow */
    char deep[200];
    memset(deep, '[', 150);
    deep[150] = '\0';
    p = json_file(deep);
    assert_int_equal(fr_json_load(&j, p, &e), FR_EFORMAT);
    assert_non_null(strstr(e.msg, "nested too deeply"));
    unlink(p);
    assert_int_equal(fr_json_load(&j, "/nonexistent/config.json", &e), FR_EIO);
}

static void test_now_monotonic(void **state)
{
    struct timespec ten_ms = {0, 10 * 1000 * 1000};
    double t0, t1, prev;
    int i;

    (void)state;
    t0 = fr_now();
    assert_true(t0 > 0.0);
    prev = t0;
    for (i = 0; i < 10000; i++) {
        double t = fr_now();
        assert_true(t >= prev);
        prev = t;
    }
    assert_int_equal(nanosleep(&ten_ms, NULL), 0);
    t1 = fr_now();
    assert_true(t1 - t0 >= 0.009);
    assert_true(t1 - t0 < 10.0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seterr),
        cmocka_unit_test(test_alloc_aligned_zeroed),
        cmocka_unit_test(test_alloc_rejects_bad_sizes),
        cmocka_unit_test(test_dtypes),
        cmocka_unit_test(test_num_threads_env),
        cmocka_unit_test(test_num_threads_set),
        cmocka_unit_test(test_desc_shape_symbols),
        cmocka_unit_test(test_desc_shape_reads_only_used_symbols),
        cmocka_unit_test_setup_teardown(test_bind_block, make_tmpdir, remove_tmpdir),
        cmocka_unit_test(test_now_monotonic),
        cmocka_unit_test(test_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
