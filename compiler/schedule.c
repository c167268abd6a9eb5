/*
 * schedule.c - assigns nodes to kernels, and the kernel-table operations
 * the fusion passes share.
 *
 * After pass_schedule every node that does work has node->kernel >= 0,
 * g->kernels lists each kernel's nodes in topological order, and kernels
 * are numbered in execution order; sources (inputs, weights, constants,
 * caches), reshapes (a view of contiguous data) and outputs (forward copies
 * them at the end, or they are computed in place) have -1.  This pass makes
 * every working node its own KK_SINGLE kernel: the unfused baseline that
 * -O0 keeps forever, and the starting point the fusion passes merge from.
 *
 * The fusion passes then merge kernels.  A merge is legal when the kernel
 * graph stays acyclic: no path may leave one kernel, run through a third
 * and come back into the other, or the merged kernel would have to run both
 * before and after that third one.  sched_compact restores the invariants
 * (no empty kernels, execution order, dense ids) at the end of every pass,
 * so the verifier can check each pass on its own.
 */
#include "fusec.h"

#include <stdlib.h>
#include <string.h>

void pass_schedule(Graph *g, const Options *o) {
    (void)o;
    int k = 0;
    for (int i = 0; i < g->nnodes; i++) {
        Node *n = g->nodes[i];
        bool none = op_info[n->op].cat == CAT_SOURCE || n->op == OP_RESHAPE || n->op == OP_OUTPUT;
        n->kernel = none ? -1 : k++;
    }
    g->nkernels = k;
    g->kernels = fu_alloc(sizeof(Kernel *) * (size_t)(k ? k : 1));
    for (int i = 0; i < g->nnodes; i++) {
        Node *n = g->nodes[i];
        if (n->kernel < 0)
            continue;
        Kernel *kr = fu_alloc(sizeof *kr);
        kr->id = n->kernel;
        kr->kind = KK_SINGLE;
        kr->nnodes = 1;
        kr->nodes = fu_alloc(sizeof(Node *));
        kr->nodes[0] = n;
        g->kernels[n->kernel] = kr;
    }
}

/* ---- switches ------------------------------------------------------------- */

static const struct {
    const char *name;
    unsigned bit;
} pass_names[] = {
    {"elementwise", FUSE_ELEMENTWISE}, {"norm", FUSE_NORM},           {"epilogue", FUSE_EPILOGUE},
    {"softmax", FUSE_SOFTMAX},         {"attention", FUSE_ATTENTION}, {"mlp", FUSE_MLP},
};

unsigned fuse_pass_bit(const char *name) {
    for (size_t i = 0; i < sizeof pass_names / sizeof pass_names[0]; i++)
        if (strcmp(name, pass_names[i].name) == 0)
            return pass_names[i].bit;
    return 0;
}

bool fuse_enabled(const Options *o, unsigned bit) {
    return o->opt_level > 0 && !(o->no_fuse & bit);
}

bool fuse_pass_on(Graph *g, const Options *o, unsigned bit, const char *name) {
    if (fuse_enabled(o, bit))
        return true;
    if (o->opt_level > 0)
        fuse_note(g, "%s: off (--no-fuse=%s)", name, name);
    return false;
}

bool fuse_gemm_kinds(void) {
    const char *e = getenv("FUSEC_GEMM_KINDS");
    return !(e && strcmp(e, "0") == 0);
}

static int cmp_node_id(const void *x, const void *y);

bool fuse_gemm_ok(Graph *g, Node *const *nodes, int n, KernelKind kind, const char *pass) {
    if (!fuse_gemm_kinds())
        return false;
    Kernel kr = {-1, kind, n, fu_alloc(sizeof(Node *) * (size_t)(n + 1)), NULL};
    memcpy(kr.nodes, nodes, sizeof(Node *) * (size_t)n);
    qsort(kr.nodes, (size_t)n, sizeof(Node *), cmp_node_id);
    char why[256];
    if (emit_gemm_supports(&kr, why, sizeof why))
        return true;
    fuse_note(g, "%s: the GEMM emitter cannot take %s as one kernel: %s", pass,
              fuse_name(kr.nodes[n - 1]), why);
    return false;
}

/* ---- the kernel graph ----------------------------------------------------- */

int sched_kernel_of(const Node *n) {
    while (n->kernel < 0 && n->op == OP_RESHAPE)
        n = n->in[0];
    return n->kernel;
}

/* Whether some path leaves the set of kernels `in`, runs through at least
 * one kernel outside it and comes back in: then the set cannot become one
 * kernel.  Breadth first over the outside kernels the set feeds, on a
 * kernel-to-consumer edge list built once per query: linear in the graph,
 * where a scan of every node per visited kernel made fusing a long chain
 * cubic (5000 statements took minutes). */
static bool path_around(const Graph *g, const bool *in) {
    int nk = g->nkernels, ne = 0;
    for (int i = 0; i < g->nnodes; i++)
        if (g->nodes[i]->kernel >= 0)
            ne += g->nodes[i]->nin;
    /* first[k] .. first[k+1]-1 index the consumers of kernel k in to[] */
    int *first = calloc((size_t)nk + 2, sizeof *first);
    int *to = malloc(sizeof *to * (size_t)(ne + 1));
    int *queue = malloc(sizeof *queue * (size_t)(nk + 1));
    bool *seen = calloc((size_t)nk + 1, sizeof *seen);
    if (!first || !to || !queue || !seen) {
        fprintf(stderr, "fusec: fatal error: out of memory\n");
        exit(EXIT_INTERNAL);
    }
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < g->nnodes; i++) {
            const Node *c = g->nodes[i];
            if (c->kernel < 0)
                continue;
            for (int j = 0; j < c->nin; j++) {
                int p = sched_kernel_of(c->in[j]);
                if (p < 0 || p == c->kernel)
                    continue;
                if (pass == 0)
                    first[p + 2]++;
                else
                    to[first[p + 1]++] = c->kernel;
            }
        }
        if (pass == 0)
            for (int k = 0; k < nk; k++)
                first[k + 2] += first[k + 1];
    }
    int qh = 0, qt = 0;
    bool found = false;
    /* kernels outside the set that read something made inside it */
    for (int k = 0; k < nk; k++) {
        if (!in[k])
            continue;
        for (int e = first[k]; e < first[k + 1]; e++)
            if (!in[to[e]] && !seen[to[e]]) {
                seen[to[e]] = true;
                queue[qt++] = to[e];
            }
    }
    while (qh < qt && !found) {
        int k = queue[qh++];
        for (int e = first[k]; e < first[k + 1] && !found; e++) {
            int c = to[e];
            if (in[c])
                found = true;
            else if (!seen[c]) {
                seen[c] = true;
                queue[qt++] = c;
            }
        }
    }
    free(first);
    free(to);
    free(queue);
    free(seen);
    return found;
}

bool sched_can_merge_set(const Graph *g, const int *ks, int n) {
    bool *in = fu_alloc(sizeof *in * (size_t)(g->nkernels + 1));
    for (int i = 0; i < n; i++) {
        FU_ASSERT(ks[i] >= 0 && ks[i] < g->nkernels);
        in[ks[i]] = true;
    }
    return !path_around(g, in);
}

bool sched_can_merge(const Graph *g, int a, int b) {
    int ks[2] = {a, b};
    return sched_can_merge_set(g, ks, 2);
}

void sched_merge(Graph *g, int into, int from) {
    FU_ASSERT(into >= 0 && into < g->nkernels && from >= 0 && from < g->nkernels);
    if (into == from)
        return;
    Kernel *a = g->kernels[into], *b = g->kernels[from];
    Node **nodes = fu_alloc(sizeof *nodes * (size_t)(a->nnodes + b->nnodes));
    int n = 0, i = 0, j = 0;
    /* merge two id-sorted lists */
    while (i < a->nnodes || j < b->nnodes) {
        if (j >= b->nnodes || (i < a->nnodes && a->nodes[i]->id < b->nodes[j]->id))
            nodes[n++] = a->nodes[i++];
        else
            nodes[n++] = b->nodes[j++];
    }
    for (i = 0; i < b->nnodes; i++)
        b->nodes[i]->kernel = into;
    a->nodes = nodes;
    a->nnodes = n;
    b->nnodes = 0;
    b->nodes = NULL;
}

static int cmp_node_id(const void *x, const void *y) {
    const Node *a = *(Node *const *)x, *b = *(Node *const *)y;
    return (a->id > b->id) - (a->id < b->id);
}

/* A min-heap of kernel indices keyed by their first node's id. */
typedef struct Heap {
    int *k, n;
    const Graph *g;
} Heap;

static int heap_key(const Heap *h, int i) { return h->g->kernels[h->k[i]]->nodes[0]->id; }

static void heap_push(Heap *h, int k) {
    int i = h->n++;
    h->k[i] = k;
    while (i > 0 && heap_key(h, (i - 1) / 2) > heap_key(h, i)) {
        int p = (i - 1) / 2, t = h->k[p];
        h->k[p] = h->k[i];
        h->k[i] = t;
        i = p;
    }
}

static int heap_pop(Heap *h) {
    int top = h->k[0], i = 0;
    h->k[0] = h->k[--h->n];
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < h->n && heap_key(h, l) < heap_key(h, m))
            m = l;
        if (r < h->n && heap_key(h, r) < heap_key(h, m))
            m = r;
        if (m == i)
            return top;
        int t = h->k[m];
        h->k[m] = h->k[i];
        h->k[i] = t;
        i = m;
    }
}

static int cmp_edge(const void *x, const void *y) {
    const int *a = x, *b = y;
    return a[0] != b[0] ? (a[0] > b[0]) - (a[0] < b[0]) : (a[1] > b[1]) - (a[1] < b[1]);
}

void sched_compact(Graph *g) {
    int nk = g->nkernels, ne = 0;
    for (int k = 0; k < nk; k++)
        if (g->kernels[k]->nnodes)
            qsort(g->kernels[k]->nodes, (size_t)g->kernels[k]->nnodes, sizeof(Node *), cmp_node_id);
    /* producer -> consumer edges between kernels, sorted and each once, as
     * lists: first[k] .. first[k+1]-1 index kernel k's consumers in to[] */
    for (int i = 0; i < g->nnodes; i++)
        if (g->nodes[i]->kernel >= 0)
            ne += g->nodes[i]->nin;
    int *pairs = fu_alloc(sizeof *pairs * (size_t)(2 * ne + 2));
    int np = 0;
    for (int i = 0; i < g->nnodes; i++) {
        const Node *c = g->nodes[i];
        if (c->kernel < 0)
            continue;
        for (int j = 0; j < c->nin; j++) {
            int p = sched_kernel_of(c->in[j]);
            if (p >= 0 && p != c->kernel) {
                pairs[2 * np] = p;
                pairs[2 * np + 1] = c->kernel;
                np++;
            }
        }
    }
    qsort(pairs, (size_t)np, 2 * sizeof *pairs, cmp_edge);
    int *first = fu_alloc(sizeof *first * (size_t)(nk + 1));
    int *to = fu_alloc(sizeof *to * (size_t)(np + 1));
    int *indeg = fu_alloc(sizeof *indeg * (size_t)(nk + 1));
    int nt = 0;
    for (int e = 0, k = 0; k <= nk; k++) {
        first[k] = nt;
        for (; e < np && pairs[2 * e] == k; e++)
            if (nt == first[k] || to[nt - 1] != pairs[2 * e + 1]) {
                to[nt++] = pairs[2 * e + 1];
                indeg[pairs[2 * e + 1]]++;
            }
    }
    /* Kahn's algorithm; among ready kernels the one with the smallest first
     * node goes first, so the order follows the block's text. */
    Kernel **order = fu_alloc(sizeof *order * (size_t)(nk + 1));
    Heap h = {fu_alloc(sizeof(int) * (size_t)(nk + 1)), 0, g};
    for (int k = 0; k < nk; k++)
        if (g->kernels[k]->nnodes && indeg[k] == 0)
            heap_push(&h, k);
    int n = 0;
    while (h.n) {
        int k = heap_pop(&h);
        order[n++] = g->kernels[k];
        for (int e = first[k]; e < first[k + 1]; e++)
            if (--indeg[to[e]] == 0)
                heap_push(&h, to[e]);
    }
    for (int k = 0; k < nk; k++)
        if (g->kernels[k]->nnodes && indeg[k] > 0)
            fu_internal(__FILE__, __LINE__, "fusion made the kernel graph cyclic (kernel %d)", k);
    for (int k = 0; k < n; k++) {
        order[k]->id = k;
        for (int i = 0; i < order[k]->nnodes; i++)
            order[k]->nodes[i]->kernel = k;
    }
    g->kernels = order;
    g->nkernels = n;
}

/* ---- graph edits ---------------------------------------------------------- */

int ir_users(const Graph *g, const Node *n, Node ***out) {
    int count = 0;
    for (int i = n->id + 1; i < g->nnodes; i++)
        for (int j = 0; j < g->nodes[i]->nin; j++)
            if (g->nodes[i]->in[j] == n) {
                count++;
                break;
            }
    Node **list = fu_alloc(sizeof *list * (size_t)(count + 1));
    count = 0;
    for (int i = n->id + 1; i < g->nnodes; i++)
        for (int j = 0; j < g->nodes[i]->nin; j++)
            if (g->nodes[i]->in[j] == n) {
                list[count++] = g->nodes[i];
                break;
            }
    *out = list;
    return count;
}

void ir_replace(Graph *g, Node *old, Node *nw) {
    FU_ASSERT(g->nnodes > 0 && g->nodes[g->nnodes - 1] == nw && old->id < nw->id);
    for (int j = 0; j < nw->nin; j++)
        FU_ASSERT(nw->in[j]->id < old->id);
    int at = old->id;
    memmove(g->nodes + at + 1, g->nodes + at, sizeof(Node *) * (size_t)(g->nnodes - 1 - at));
    g->nodes[at] = nw;
    for (int i = 0; i < g->nnodes; i++)
        g->nodes[i]->id = i;
    for (int i = 0; i < g->nnodes; i++) {
        Node *c = g->nodes[i];
        if (c == nw)
            continue;
        for (int j = 0; j < c->nin; j++)
            if (c->in[j] == old)
                c->in[j] = nw;
    }
    if (!nw->label)
        nw->label = old->label;
    ir_dce(g);
    /* constants the replaced subgraph used are dead too (dce keeps sources) */
    int k = 0;
    for (int i = 0; i < g->nnodes; i++)
        if (g->nodes[i]->op != OP_CONST || g->nodes[i]->nuses > 0) {
            g->nodes[k] = g->nodes[i];
            g->nodes[k]->id = k;
            k++;
        }
    g->nnodes = k;
}

void fuse_note(Graph *g, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    FU_ASSERT(n >= 0);
    char *s = fu_alloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    /* a pass that retries (epilogue growth) would repeat itself */
    for (int i = 0; i < g->nfuse_notes; i++)
        if (strcmp(g->fuse_notes[i], s) == 0)
            return;
    const char **notes = fu_alloc(sizeof *notes * (size_t)(g->nfuse_notes + 1));
    if (g->nfuse_notes)
        memcpy(notes, g->fuse_notes, sizeof *notes * (size_t)g->nfuse_notes);
    notes[g->nfuse_notes++] = s;
    g->fuse_notes = notes;
}

bool sched_try_merge(Graph *g, int into, int from) {
    if (!sched_can_merge(g, into, from))
        return false;
    sched_merge(g, into, from);
    return true;
}

const char *fuse_name(const Node *n) {
    if (n->label)
        return n->label;
    if (n->name)
        return n->name;
    return fu_format("%%%d", n->id);
}

bool fuse_same_shape(const Node *a, const Node *b) {
    if (a->rank != b->rank)
        return false;
    for (int d = 0; d < a->rank; d++)
        if (!dim_eq(a->shape[d], b->shape[d]))
            return false;
    return true;
}

bool fuse_is_elementwise(const Node *n) {
    return op_info[n->op].cat == CAT_UNARY || op_info[n->op].cat == CAT_BINARY;
}
