/*
 * run.c - `fusec run`: compile a whole model and generate tokens with it.
 *
 *   fusec run MODEL.fdl --weights CKPT --prompt-ids 1,2,3 [-n 32]
 *             [--temperature T] [--top-k K] [--top-p P] [--seed S] [--eos ID]
 *
 * The model block takes the token ids (i32[T]) and gives logits (f32[1, V]
 * for the last position, or f32[T, V]); its caches hold every layer's keys
 * and values.  fusec checks that interface and the checkpoint (every weight
 * present with its shape and dtype, in one file or the shards of a
 * model.safetensors.index.json) before it builds anything, then compiles the
 * block with the generation driver runtime/harness/run_main.c the way
 * `fusec check` compiles its harness (check_build_program, cached), and runs
 * it: the generated tokens go to stdout.  All sampling happens in the
 * driver; docs/language.md ("Whole models") describes it.
 */
#include "fusec.h"
#include "fusec_rt.h"

#include <errno.h>
#include <fnmatch.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_NEW_TOKENS (1 << 20)

static const char help_text[] =
    "usage: fusec run MODEL.fdl --weights CKPT --prompt-ids 1,2,3 [options]\n"
    "\n"
    "Compiles the model block of MODEL.fdl (ids i32[T] in, logits f32[1 or T, V] out,\n"
    "a KV cache per layer), prefills the prompt, then generates one token at a time;\n"
    "the new tokens go to stdout, space-separated.\n"
    "\n"
    "options:\n"
    "  --weights CKPT     a .safetensors file, or a Hugging Face model.safetensors.index.json\n"
    "                     (the weights spread over the shards it names)\n"
    "  --prompt-ids LIST  the prompt's token ids, comma-separated; repeat it for several\n"
    "                     prompts, generated together in batches (NAME_forward_batch): one\n"
    "                     output line per prompt, in order\n"
    "  --prompt-file F    more prompts, one a line (ids separated by commas or spaces)\n"
    "  -n N               tokens to generate (default 32)\n"
    "  --temperature T    0 (default): greedy, the first largest logit; else sample from\n"
    "                     softmax(logits / T)\n"
    "  --top-k K          sample among the K largest logits only (default 0: all)\n"
    "  --top-p P          sample among the most probable tokens whose mass reaches P\n"
    "                     (default 1: all)\n"
    "  --seed S           the sampling seed (default 0): a seed gives the same tokens\n"
    "  --eos ID           stop after generating ID\n"
    "  --weight-prefix S  put S before every weight name (e.g. w. for a golden file)\n"
    "  --block NAME       the model block (default: the last in MODEL.fdl)\n"
    "  --config FILE      config.json: dims and consts written config.NAME read from it\n"
    "  --target T         target ISA (default native)\n"
    "  --weight-type PATTERN=TYPE\n"
    "                     read the weights matching PATTERN as TYPE (f32, bf16, f16, q8_0,\n"
    "                     q4_0), as fusec does; a weight no rule names is read as the\n"
    "                     checkpoint stores it (a bf16 or quantized checkpoint runs as is)\n"
    "  --compute C        f32 (default) or bf16: the arithmetic of linear, as fusec does\n"
    "  --kv-type K        every KV cache f32, f16 or bf16 (default: as declared)\n"
    "  --cc CC            cross-compile with CC (e.g. aarch64-linux-gnu-gcc), as fusec check\n"
    "  --run-with CMD     run the model as CMD PROGRAM ... (e.g. \"qemu-aarch64 -L /usr/aarch64-linux-gnu\")\n"
    "  --tp N             tensor parallelism over N MPI ranks: each rank's part of the model is\n"
    "                     compiled (fusec --tp=N --tp-rank=R) and all run under mpirun; the\n"
    "                     tokens are the single-process ones (docs/distributed.md)\n"
    "  --mpirun CMD       the launcher for --tp (default \"mpirun --oversubscribe\", plus\n"
    "                     --allow-run-as-root as root)\n"
    "  --stats            print the prefill and decode speeds on stderr\n"
    "  -v                 print the build commands\n"
    "  --help             print this help and exit\n"
    "\n"
    "Every option also takes the form --option=VALUE.\n"
    "\n"
    "exit status: 0 success, 1 bad input (the model, the checkpoint, an id out of range),\n"
    "             2 bad usage, 70 internal error\n";

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "fusec run: error: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nfusec run: see 'fusec run --help'\n");
    return EXIT_USAGE;
}

static bool parse_num(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !(v >= lo && v <= hi))
        return false;
    *out = v;
    return true;
}

static bool parse_int(const char *s, long long lo, long long hi, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

/* "1,2,3": every id a whole number in [0, 2^31) */
static bool parse_ids(const char *s, int64_t *count)
{
    *count = 0;
    for (const char *p = s;;) {
        const char *e = strchr(p, ',');
        const char *tok = fu_strndup(p, e ? (size_t)(e - p) : strlen(p));
        long long v;
        if (!parse_int(tok, 0, INT32_MAX, &v) || (*tok < '0' || *tok > '9'))
            return false;
        ++*count;
        if (!e)
            return true;
        p = e + 1;
    }
}

/* The model's interface: ids i32[T] in, logits f32[1 or T, V] out, caches. */
static bool check_interface(const Graph *g)
{
    int ts = -1;
    if (g->ninputs == 1 && g->inputs[0]->dtype == DT_I32 && g->inputs[0]->rank == 1)
        for (int k = 0; k < g->nsyms; k++)
            if (k != g->cache_sym && dim_eq(g->inputs[0]->shape[0], dim_sym(k)))
                ts = k;
    if (ts < 0) {
        diag_plain_error("fusec run: block '%s' must take one input, the token ids i32[T]", g->name);
        return false;
    }
    if (g->cache_sym < 0 || g->nsyms != 2) {
        diag_plain_error("fusec run: block '%s' must have caches and the two symbols T and P (it has %d "
                         "symbols%s)", g->name, g->nsyms, g->cache_sym < 0 ? ", no cache" : "");
        return false;
    }
    const Node *o = g->noutputs == 1 ? g->outputs[0] : NULL;
    if (!o || o->dtype != DT_F32 || o->rank != 2 || !dim_is_const(o->shape[1]) ||
        !(dim_eq(o->shape[0], dim_const(1)) || dim_eq(o->shape[0], dim_sym(ts)))) {
        diag_plain_error("fusec run: block '%s' must give one output, the logits f32[1, V] (the last "
                         "position) or f32[T, V]", g->name);
        return false;
    }
    return true;
}

/* Every weight in the checkpoint with its shape and dtype, before building. */
static bool check_weights(const Graph *g, const char *path, const char *prefix)
{
    fr_shards sh;
    fr_err err;
    if (fr_shards_open(&sh, path, &err) != FR_OK) {
        diag_plain_error("%s", err.msg);
        return false;
    }
    bool ok = true;
    for (int i = 0; i < g->nweights && ok; i++) {
        const Node *w = g->weights[i];
        int64_t shape[FU_MAX_RANK];
        for (int d = 0; d < w->rank; d++)
            shape[d] = w->shape[d].c;
        const char *full = fu_format("%s%s", prefix ? prefix : "", w->name);
        const fr_st *f = fr_shards_file(&sh, full, &err);
        const void *data;
        ok = f && fr_st_bind(f, prefix, w->name, (fr_dtype)dt_info(w->dtype)->fr, w->rank, shape, &data, &err) == FR_OK;
        const char *pat;
        if (!ok)
            diag_plain_error("%s", err.msg);
        if (!ok && f && dt_weight_rule(w->name, &pat) >= 0)
            fprintf(stderr, "fusec run: note: '%s' is %s by --weight-type '%s=%s'\n", w->name,
                    dtype_name(w->dtype), pat, dtype_name(w->dtype));
        /* a tied checkpoint has no lm_head: the logits read the embedding table */
        if (!ok && strcmp(w->name, "lm_head.weight") == 0)
            fprintf(stderr, "fusec run: note: a checkpoint without lm_head.weight ties its embeddings "
                            "(tie_word_embeddings): use a block whose logits read model.embed_tokens.weight "
                            "(dsl-examples/llama_model.fdl: --block llama_model)\n");
    }
    fr_shards_close(&sh);
    return ok;
}

/* A weight's name as a glob: glob characters escaped; with `digits`, every
 * run of digits (a layer index) becomes '*'. */
static const char *name_glob(const char *name, bool digits)
{
    char *out = fu_alloc(2 * strlen(name) + 1), *o = out;
    for (const char *p = name; *p; p++) {
        if (digits && *p >= '0' && *p <= '9') {
            while (p[1] >= '0' && p[1] <= '9')
                p++;
            *o++ = '*';
            continue;
        }
        if (strchr("*?[]\\", *p))
            *o++ = '\\';
        *o++ = *p;
    }
    *o = '\0';
    return out;
}

/*
 * The checkpoint's types.  A weight that no --weight-type rule names and that
 * the checkpoint stores as another weight type (f32, bf16, f16, q8_0, q4_0)
 * is read as stored: fusec run adds a --weight-type rule for it (one per
 * name with its layer indices as '*' where that names no other weight, else
 * the exact name).  *added counts the weights; false after an error.
 */
static bool adopt_stored_types(const Graph *g, const char *path, const char *prefix, int *added)
{
    fr_shards sh;
    fr_err err;
    *added = 0;
    if (fr_shards_open(&sh, path, &err) != FR_OK) {
        diag_plain_error("%s", err.msg);
        return false;
    }
    int *have = fu_alloc(sizeof *have * (size_t)(g->nweights + 1));
    for (int i = 0; i < g->nweights; i++) {
        const Node *w = g->weights[i];
        const char *full = fu_format("%s%s", prefix ? prefix : "", w->name);
        const fr_st *f = dt_weight_rule(w->name, NULL) < 0 && dt_info(w->dtype)->kind != DK_INT
                             ? fr_shards_file(&sh, full, &err) : NULL;
        const fr_tensor *t = f ? fr_st_find(f, full) : NULL;
        have[i] = t ? dt_from_fr(t->dtype) : -1;
        if (have[i] < 0 || have[i] == (int)w->dtype || dt_info((DType)have[i])->kind == DK_INT)
            have[i] = -1;   /* as declared, or a mismatch check_weights reports */
        *added += have[i] >= 0;
    }
    fr_shards_close(&sh);
    bool ok = true, *done = fu_alloc(sizeof *done * (size_t)(g->nweights + 1));
    for (int i = 0; i < g->nweights; i++)
        done[i] = false;
    for (int i = 0; i < g->nweights && ok; i++) {
        if (have[i] < 0 || done[i])
            continue;
        /* the layer pattern, if every weight it names is adopted with this type */
        const char *pat = name_glob(g->weights[i]->name, true);
        for (int j = 0; j < g->nweights && pat; j++)
            if (fnmatch(pat, g->weights[j]->name, 0) == 0 && have[j] != have[i])
                pat = NULL;
        if (!pat)
            pat = name_glob(g->weights[i]->name, false);
        int t = have[i];
        for (int j = i; j < g->nweights; j++)
            if (have[j] == t && fnmatch(pat, g->weights[j]->name, 0) == 0)
                done[j] = true;
        char why[256];
        ok = dt_add_weight_rule(fu_format("%s=%s", pat, dtype_name((DType)t)), why, sizeof why);
        if (!ok)
            diag_plain_error("fusec run: reading the checkpoint's types: %s (give --weight-type rules)", why);
    }
    return ok;
}

/* The prompts of a --prompt-file: one a line, ids separated by commas or
 * spaces, blank lines skipped; appended to *list as "a,b;c,d". */
static bool read_prompt_file(const char *path, char **list, int *nprompts)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        diag_plain_error("fusec run: cannot open '%s': %s", path, strerror(errno));
        return false;
    }
    char line[1 << 16];
    int lineno = 0;
    bool ok = true;
    while (ok && fgets(line, sizeof line, f)) {
        lineno++;
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n') {
            diag_plain_error("%s:%d: the line is too long (at most %d characters)", path, lineno,
                             (int)sizeof line - 2);
            ok = false;
            break;
        }
        /* words separated by commas or white space -> "a,b,c" */
        char *ids = fu_alloc(len + 1), *o = ids;
        for (char *p = line; *p;) {
            size_t sep = strspn(p, ", \t\r\n"), w;
            p += sep;
            if (!(w = strcspn(p, ", \t\r\n")))
                continue;
            if (o != ids)
                *o++ = ',';
            memcpy(o, p, w);
            o += w;
            p += w;
        }
        *o = '\0';
        int64_t count;
        if (!*ids)
            continue;
        if (!parse_ids(ids, &count)) {
            diag_plain_error("%s:%d: expected token ids (whole numbers >= 0) separated by commas or spaces",
                             path, lineno);
            ok = false;
        } else {
            *list = *list ? fu_format("%s;%s", *list, ids) : ids;
            ++*nprompts;
        }
    }
    fclose(f);
    if (ok && *nprompts == 0) {
        diag_plain_error("%s: no prompt in the file", path);
        ok = false;
    }
    return ok;
}

int run_main(int argc, char **argv)
{
    const char *file = NULL, *weights = NULL, *block = NULL, *config = NULL;
    const char *target = "native", *prefix = NULL, *cc = NULL, *run_with = NULL;
    char *ids = NULL;
    int nprompts = 0;
    double temp = 0, top_p = 1;
    long long n = 32, top_k = 0, seed = 0, eos = -1, tp = 1;
    const char *mpirun = NULL, *prompt_file = NULL;
    bool stats = false, verbose = false, compute_bf16 = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        /* --option=VALUE is --option VALUE */
        const char *eq = strncmp(a, "--", 2) == 0 ? strchr(a, '=') : NULL;
        if (eq) {
            v = eq + 1;
            a = fu_strndup(a, (size_t)(eq - a));
        }
        bool takes = strcmp(a, "--weights") == 0 || strcmp(a, "--prompt-ids") == 0 || strcmp(a, "-n") == 0 ||
                     strcmp(a, "--temperature") == 0 || strcmp(a, "--top-k") == 0 ||
                     strcmp(a, "--top-p") == 0 || strcmp(a, "--seed") == 0 || strcmp(a, "--eos") == 0 ||
                     strcmp(a, "--weight-prefix") == 0 || strcmp(a, "--block") == 0 ||
                     strcmp(a, "--config") == 0 || strcmp(a, "--target") == 0 || strcmp(a, "--cc") == 0 ||
                     strcmp(a, "--run-with") == 0 || strcmp(a, "--tp") == 0 || strcmp(a, "--mpirun") == 0 ||
                     strcmp(a, "--weight-type") == 0 || strcmp(a, "--compute") == 0 ||
                     strcmp(a, "--kv-type") == 0 || strcmp(a, "--prompt-file") == 0;
        char why[256];
        if (eq && (strcmp(a, "--stats") == 0 || strcmp(a, "--help") == 0))
            return usage_error("%s takes no value", a);
        if (strcmp(a, "--help") == 0) {
            fputs(help_text, stdout);
            return EXIT_OK;
        }
        if (takes && !v)
            return usage_error("%s needs a value", a);
        if (strcmp(a, "--stats") == 0)
            stats = true;
        else if (strcmp(a, "-v") == 0)
            verbose = true;
        else if (strcmp(a, "--weights") == 0)
            weights = v;
        else if (strcmp(a, "--prompt-ids") == 0) {
            int64_t count;
            if (!parse_ids(v, &count))
                return usage_error("--prompt-ids: expected token ids (whole numbers >= 0) separated by commas, "
                                   "got '%s'", v);
            ids = ids ? fu_format("%s;%s", ids, v) : fu_strndup(v, strlen(v));
            nprompts++;
        } else if (strcmp(a, "--prompt-file") == 0)
            prompt_file = v;
        else if (strcmp(a, "--weight-prefix") == 0)
            prefix = v;
        else if (strcmp(a, "--block") == 0)
            block = v;
        else if (strcmp(a, "--config") == 0)
            config = v;
        else if (strcmp(a, "--target") == 0)
            target = v;
        else if (strcmp(a, "--cc") == 0)
            cc = v;
        else if (strcmp(a, "--run-with") == 0)
            run_with = v;
        else if (strcmp(a, "--mpirun") == 0)
            mpirun = v;
        else if (strcmp(a, "--compute") == 0 && strcmp(v, "f32") && strcmp(v, "bf16"))
            return usage_error("--compute: expected f32 or bf16, got '%s'", v);
        else if (strcmp(a, "--compute") == 0)
            compute_bf16 = strcmp(v, "bf16") == 0;
        else if (strcmp(a, "--weight-type") == 0 && !dt_add_weight_rule(v, why, sizeof why))
            return usage_error("--weight-type: %s", why);
        else if (strcmp(a, "--kv-type") == 0 && !dt_set_kv_type(v, why, sizeof why))
            return usage_error("--kv-type: %s", why);
        else if (strcmp(a, "--tp") == 0 && !parse_int(v, 1, 4096, &tp))
            return usage_error("--tp: expected a rank count in [1, 4096], got '%s'", v);
        else if (strcmp(a, "-n") == 0 && !parse_int(v, 1, MAX_NEW_TOKENS, &n))
            return usage_error("-n: expected a token count in [1, 1048576], got '%s'", v);
        else if (strcmp(a, "--temperature") == 0 && !parse_num(v, 0, 1e6, &temp))
            return usage_error("--temperature: expected a number >= 0, got '%s'", v);
        else if (strcmp(a, "--top-p") == 0 && (!parse_num(v, 0, 1, &top_p) || top_p == 0))
            return usage_error("--top-p: expected a number in (0, 1], got '%s'", v);
        else if (strcmp(a, "--top-k") == 0 && !parse_int(v, 0, INT32_MAX, &top_k))
            return usage_error("--top-k: expected a whole number >= 0, got '%s'", v);
        else if (strcmp(a, "--seed") == 0 && !parse_int(v, 0, INT64_MAX, &seed))
            return usage_error("--seed: expected a whole number >= 0, got '%s'", v);
        else if (strcmp(a, "--eos") == 0 && !parse_int(v, 0, INT32_MAX, &eos))
            return usage_error("--eos: expected a token id, got '%s'", v);
        else if (!takes && a[0] == '-')
            return usage_error("unknown option '%s'", a);
        else if (!takes && file)
            return usage_error("one model file, got a second: '%s'", a);
        else if (!takes)
            file = a;
        if (takes && !eq)
            i++;
    }
    if (!file)
        return usage_error("%s", "no model file");
    if (!weights)
        return usage_error("%s", "--weights is required");
    if (!ids && !prompt_file)
        return usage_error("%s", "--prompt-ids is required (or --prompt-file)");
    if (prompt_file && !read_prompt_file(prompt_file, &ids, &nprompts))
        return EXIT_FAIL;
    if (tp > 1 && nprompts > 1)
        return usage_error("%s", "--tp runs one prompt (several --prompt-ids need one process)");
    const Target *t = target_find(target);
    if (!t)
        return usage_error("unknown target '%s' (see fusec --help)", target);
    if (config && fe_load_config(config) != 0)
        return EXIT_FAIL;

    Options opt = {1, target, 0, compute_bf16, NULL, false};
    Graph *g = compile_front(file, block);
    if (!g)
        return EXIT_FAIL;
    if (!check_interface(g))
        return EXIT_FAIL;
    int adopted;
    if (!adopt_stored_types(g, weights, prefix, &adopted))
        return EXIT_FAIL;
    if (adopted && !(g = compile_front(file, block))) {
        fprintf(stderr, "fusec run: note: %d weights are read as the checkpoint stores them (a type no "
                        "--weight-type rule gives); declare their type, or convert the checkpoint (fusec quantize)\n",
                adopted);
        return EXIT_FAIL;
    }
    if (verbose && adopted)
        fprintf(stderr, "fusec run: %d weights read as the checkpoint stores them\n", adopted);
    if (!check_weights(g, weights, prefix))
        return EXIT_FAIL;
    if (tp > 1 && run_with)
        return usage_error("%s", "--run-with and --tp do not go together (use --mpirun)");
    const char *rargs[11];
    rargs[0] = weights;
    rargs[1] = prefix ? prefix : "-";
    rargs[2] = ids;
    rargs[3] = fu_format("%lld", n);
    rargs[4] = fu_format("%.17g", temp);
    rargs[5] = fu_format("%lld", top_k);
    rargs[6] = fu_format("%.17g", top_p);
    rargs[7] = fu_format("%lld", seed);
    rargs[8] = fu_format("%lld", eos);
    rargs[9] = stats ? "1" : "0";
    rargs[10] = NULL;
    const char **exes = fu_alloc(sizeof *exes * (size_t)tp);
    check_set_mpi(tp > 1);
    for (int r = 0; r < tp; r++) {
        if (r > 0 && !(g = compile_front(file, block)))
            return EXIT_FAIL;
        if (tp > 1 && !pass_tp(g, (int)tp, r))
            return EXIT_FAIL;
        ir_verify(g, "tp");
        compile_passes(g, &opt);
        int rc = check_build_program(g, t, "run_main.c", cc, verbose, &exes[r]);
        if (rc >= 0)
            return rc;
        if (tp > 1) {
            const char *dst = fu_format("%s.%d", exes[r], r);
            if (rename(exes[r], dst) != 0) {
                diag_plain_error("cannot rename '%s': %s", exes[r], strerror(errno)); // GCOVR_EXCL_LINE
                return EXIT_FAIL; // GCOVR_EXCL_LINE
            }
            exes[r] = dst;
        }
    }
    if (tp > 1 && !mpirun)
        mpirun = geteuid() == 0 ? "mpirun --oversubscribe --allow-run-as-root" : "mpirun --oversubscribe";

    /* [run_with or mpirun words...] exe args... [: -np 1 exe args...] */
    const char *launcher = tp > 1 ? mpirun : run_with;
    char **args = fu_alloc(sizeof(char *) * (16 + (launcher ? strlen(launcher) : 0) + (size_t)tp * 14));
    int k = 0;
    for (const char *p = launcher; p && *p;) {
        p += strspn(p, " \t");
        size_t len = strcspn(p, " \t");
        if (len)
            args[k++] = fu_strndup(p, len);
        p += len;
    }
    for (int r = 0; r < tp; r++) {
        if (r > 0)
            args[k++] = ":";
        if (tp > 1) {
            args[k++] = "-np";
            args[k++] = "1";
        }
        args[k++] = (char *)exes[r];
        for (int j = 0; rargs[j]; j++)
            args[k++] = (char *)rargs[j];
    }
    args[k] = NULL;
    if (verbose) {
        for (int j = 0; j < k; j++)
            fprintf(stderr, "%s%s", j ? " " : "fusec run: ", args[j]);
        fputc('\n', stderr);
    }
    k = 0;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        diag_plain_error("cannot start the model: %s", strerror(errno)); // GCOVR_EXCL_LINE: fork fails only without resources
        return EXIT_FAIL; // GCOVR_EXCL_LINE
    }
    if (pid == 0) {
        execvp((args - k)[0], args - k);
        _exit(127); // GCOVR_EXCL_LINE: the child's lines are not counted
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) {
            diag_plain_error("cannot wait for the model: %s", strerror(errno)); // GCOVR_EXCL_LINE
            return EXIT_FAIL; // GCOVR_EXCL_LINE
        }
    if (WIFSIGNALED(status) && tp > 1)
        for (int r = 0; r < tp; r++)
            unlink(exes[r]);
    if (WIFSIGNALED(status)) {
        fprintf(stderr, "fusec: internal error: the generated model crashed (signal %d)\n", WTERMSIG(status));
        return EXIT_INTERNAL;
    }
    for (int r = 0; tp > 1 && r < tp; r++)
        unlink(exes[r]);    /* the rank programs: tmp_cleanup knows only its own names */
    if (WEXITSTATUS(status) == 127)
        diag_plain_error("cannot run '%s'", args[0]);
    return WEXITSTATUS(status) == 0 ? EXIT_OK : EXIT_FAIL;
}
