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
    g->sched = NULL;
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
              fuse_name(g, kr.nodes[n - 1]), why);
    return false;
}

/* ---- the kernel graph ----------------------------------------------------- */

int sched_kernel_of(const Node *n) {
    while (n->kernel < 0 && n->op == OP_RESHAPE)
        n = n->in[0];
    return n->kernel;
}

/* ---- the user index ------------------------------------------------------- */

/* Every node's consumers, each once and in node order: list[i][0 ..
 * cnt[i]) read the node at position i.  Built in one pass over the graph
 * when ir_users finds it stale (g->users NULL), so a fusion pass that asks
 * for the users of every node stays linear; a rewrite (ir_replace) patches
 * the lists it changes instead of dropping the index. */
struct UserIndex {
    int n;              /* g->nnodes when built */
    int *cnt;
    Node ***list;
};

static const struct UserIndex *user_index(const Graph *cg) {
    Graph *g = (Graph *)cg;     /* a cache: building it changes nothing the caller sees */
    if (g->users && g->users->n == g->nnodes)
        return g->users;
    struct UserIndex *u = fu_alloc(sizeof *u);
    u->n = g->nnodes;
    u->cnt = fu_alloc(sizeof *u->cnt * (size_t)(g->nnodes + 1));
    u->list = fu_alloc(sizeof *u->list * (size_t)(g->nnodes + 1));
    int *first = fu_alloc(sizeof *first * (size_t)(g->nnodes + 2));
    Node **v = NULL;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < g->nnodes; i++) {
            Node *c = g->nodes[i];
            if (!c)
                continue;       /* a hole a rewrite left (ir_replace) */
            for (int j = 0; j < c->nin; j++) {
                bool dup = false;
                for (int k = 0; k < j; k++)
                    dup |= c->in[k] == c->in[j];
                if (dup)
                    continue;
                int p = c->in[j]->id;
                FU_ASSERT(p >= 0 && p < i && g->nodes[p] == c->in[j]);
                if (pass == 0)
                    first[p + 1]++;
                else
                    v[first[p] + u->cnt[p]++] = c;
            }
        }
        if (pass == 0) {
            for (int i = 0; i < g->nnodes; i++)
                first[i + 1] += first[i];
            v = fu_alloc(sizeof *v * (size_t)(first[g->nnodes] + 1));
        }
    }
    for (int i = 0; i < g->nnodes; i++)
        u->list[i] = v + first[i];
    g->users = u;
    return u;
}

int ir_users(const Graph *g, const Node *n, Node ***out) {
    const struct UserIndex *u = user_index(g);
    FU_ASSERT(n->id >= 0 && n->id < g->nnodes && g->nodes[n->id] == n);
    *out = u->list[n->id];
    return u->cnt[n->id];
}

/* ---- the kernel graph: positions and merge checks --------------------------- */

/*
 * Merge checks look for a path that leaves a set of kernels, runs through
 * another kernel and comes back.  Such a path only runs through kernels
 * that lie strictly between the set's first and last kernel in a
 * topological order of the kernel graph, so each check searches that
 * window only, and each merge reorders only the window it spans: the
 * kernels in it that feed the set move before the merged kernel, the rest
 * after it (Pearce and Kelly's dynamic topological order).  A merge of
 * neighbours costs next to nothing where a search of the whole graph made
 * fusion quadratic in the size of the block.
 *
 * The positions live in g->sched, built from the kernel table the first
 * time a pass asks and dropped by pass_schedule and sched_compact.
 */
struct Sched {
    int nk;
    int *pos;           /* pos[k]: kernel k's place in the order */
    int *at;            /* at[p]: the kernel at place p */
    int *seen, *inset;  /* visit marks: equal to `stamp` when set */
    int stamp;
    int *queue, *tmp;
};

/* Calls f(ctx, c) for every kernel c != k that reads n, directly or through
 * reshape views. */
static void node_succ(const Graph *g, const Node *n, int k, void (*f)(void *, int), void *ctx) {
    Node **users;
    int nu = ir_users(g, n, &users);
    for (int u = 0; u < nu; u++) {
        const Node *c = users[u];
        if (c->kernel >= 0) {
            if (c->kernel != k)
                f(ctx, c->kernel);
        } else if (c->op == OP_RESHAPE) {
            node_succ(g, c, k, f, ctx);     /* as deep as the views are nested */
        }
    }
}

/* Calls f(ctx, c) for every kernel c != k that reads a node of kernel k
 * (through reshape views); a kernel may be reported more than once. */
static void kernel_succ(const Graph *g, int k, void (*f)(void *, int), void *ctx) {
    const Kernel *kr = g->kernels[k];
    for (int i = 0; i < kr->nnodes; i++)
        node_succ(g, kr->nodes[i], k, f, ctx);
}

/* Calls f(ctx, p) for every kernel p != k that kernel k reads. */
static void kernel_pred(const Graph *g, int k, void (*f)(void *, int), void *ctx) {
    const Kernel *kr = g->kernels[k];
    for (int i = 0; i < kr->nnodes; i++)
        for (int j = 0; j < kr->nodes[i]->nin; j++) {
            int p = sched_kernel_of(kr->nodes[i]->in[j]);
            if (p >= 0 && p != k)
                f(ctx, p);
        }
}

typedef struct Topo {
    struct Sched *s;
    int *indeg;
    int qt;
} Topo;

static void count_in(void *ctx, int c) { ((Topo *)ctx)->indeg[c]++; }

static void release(void *ctx, int c) {
    Topo *t = ctx;
    if (--t->indeg[c] == 0)
        t->s->queue[t->qt++] = c;
}

/* The positions for the current kernel table: any topological order. */
static struct Sched *sched_state(const Graph *cg) {
    Graph *g = (Graph *)cg;     /* a cache, like the user index */
    if (g->sched && g->sched->nk == g->nkernels)
        return g->sched;
    int nk = g->nkernels;
    struct Sched *s = fu_alloc(sizeof *s);
    s->nk = nk;
    s->pos = fu_alloc(sizeof(int) * (size_t)(nk + 1));
    s->at = fu_alloc(sizeof(int) * (size_t)(nk + 1));
    s->seen = fu_alloc(sizeof(int) * (size_t)(nk + 1));
    s->inset = fu_alloc(sizeof(int) * (size_t)(nk + 1));
    s->queue = fu_alloc(sizeof(int) * (size_t)(nk + 1));
    s->tmp = fu_alloc(sizeof(int) * (size_t)(nk + 1));
    Topo t = {s, fu_alloc(sizeof(int) * (size_t)(nk + 1)), 0};
    for (int k = 0; k < nk; k++)
        kernel_succ(g, k, count_in, &t);
    for (int k = 0; k < nk; k++)
        if (t.indeg[k] == 0)
            s->queue[t.qt++] = k;
    for (int qh = 0; qh < t.qt; qh++)
        kernel_succ(g, s->queue[qh], release, &t);
    if (t.qt != nk)
        fu_internal(__FILE__, __LINE__, "the kernel graph is cyclic");
    for (int p = 0; p < nk; p++) {
        s->at[p] = s->queue[p];
        s->pos[s->queue[p]] = p;
    }
    g->sched = s;
    return s;
}

typedef struct Search {
    struct Sched *s;
    int hi, qt;         /* only kernels placed before hi can lead back */
    bool found, first;  /* first: edges out of the set itself */
} Search;

static void visit_fwd(void *ctx, int c) {
    Search *q = ctx;
    struct Sched *s = q->s;
    if (s->inset[c] == s->stamp) {
        q->found |= !q->first;
        return;
    }
    if (s->pos[c] < q->hi && s->seen[c] != s->stamp) {
        s->seen[c] = s->stamp;
        s->queue[q->qt++] = c;
    }
}

/* Marks the set ks in s->inset (a new stamp) and returns its last place;
 * *lo gets its first. */
static int mark_set(struct Sched *s, const int *ks, int n, int *lo) {
    s->stamp++;
    int hi = -1;
    *lo = s->nk;
    for (int i = 0; i < n; i++) {
        FU_ASSERT(ks[i] >= 0 && ks[i] < s->nk);
        s->inset[ks[i]] = s->stamp;
        hi = s->pos[ks[i]] > hi ? s->pos[ks[i]] : hi;
        *lo = s->pos[ks[i]] < *lo ? s->pos[ks[i]] : *lo;
    }
    return hi;
}

/* Whether some path leaves the set ks, runs through at least one kernel
 * outside it and comes back in: then the set cannot become one kernel.
 * Breadth first over the outside kernels the set feeds, placed before
 * the set's last kernel. */
static bool path_around(const Graph *g, const int *ks, int n) {
    struct Sched *s = sched_state(g);
    int lo;
    Search q = {s, mark_set(s, ks, n, &lo), 0, false, true};
    for (int i = 0; i < n; i++)
        kernel_succ(g, ks[i], visit_fwd, &q);
    q.first = false;
    for (int qh = 0; qh < q.qt && !q.found; qh++)
        kernel_succ(g, s->queue[qh], visit_fwd, &q);
    return q.found;
}

bool sched_can_merge_set(const Graph *g, const int *ks, int n) {
    for (int i = 0; i < n; i++)
        FU_ASSERT(ks[i] >= 0 && ks[i] < g->nkernels);
    return !path_around(g, ks, n);
}

bool sched_can_merge(const Graph *g, int a, int b) {
    int ks[2] = {a, b};
    return sched_can_merge_set(g, ks, 2);
}

typedef struct Back {
    struct Sched *s;
    int lo, qt;
} Back;

static void visit_back(void *ctx, int p) {
    Back *q = ctx;
    struct Sched *s = q->s;
    if (s->inset[p] != s->stamp && s->pos[p] > q->lo && s->seen[p] != s->stamp) {
        s->seen[p] = s->stamp;
        s->queue[q->qt++] = p;
    }
}

/* Moves the nodes of kernel `from` into `into` (id-sorted lists merged). */
static void move_nodes(Graph *g, int into, int from) {
    Kernel *a = g->kernels[into], *b = g->kernels[from];
    Node **nodes = fu_alloc(sizeof *nodes * (size_t)(a->nnodes + b->nnodes));
    int n = 0, i = 0, j = 0;
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

void sched_merge_set(Graph *g, int into, const int *ks, int n) {
    FU_ASSERT(into >= 0 && into < g->nkernels);
    struct Sched *s = sched_state(g);
    int *set = fu_alloc(sizeof *set * (size_t)(n + 1)), m = 0;
    /* the set without repeats, into first */
    s->stamp++;
    set[m++] = into;
    s->inset[into] = s->stamp;
    for (int i = 0; i < n; i++) {
        FU_ASSERT(ks[i] >= 0 && ks[i] < g->nkernels);
        if (s->inset[ks[i]] != s->stamp) {
            s->inset[ks[i]] = s->stamp;
            set[m++] = ks[i];
        }
    }
    int lo, hi = mark_set(s, set, m, &lo);
    /* the kernels between lo and hi that feed the set go before it */
    Back q = {s, lo, 0};
    s->stamp++;     /* new `seen` marks; keep the set's */
    for (int i = 0; i < m; i++)
        s->inset[set[i]] = s->stamp;
    for (int i = 0; i < m; i++)
        kernel_pred(g, set[i], visit_back, &q);
    for (int qh = 0; qh < q.qt; qh++)
        kernel_pred(g, s->queue[qh], visit_back, &q);
    int t = 0;
    for (int p = lo; p <= hi; p++)
        if (s->seen[s->at[p]] == s->stamp && s->inset[s->at[p]] != s->stamp)
            s->tmp[t++] = s->at[p];
    s->tmp[t++] = into;
    for (int p = lo; p <= hi; p++)
        if (s->seen[s->at[p]] != s->stamp && s->inset[s->at[p]] != s->stamp)
            s->tmp[t++] = s->at[p];
    for (int i = 1; i < m; i++)
        s->tmp[t++] = set[i];
    FU_ASSERT(t == hi - lo + 1);
    for (int i = 0; i < t; i++) {
        s->at[lo + i] = s->tmp[i];
        s->pos[s->tmp[i]] = lo + i;
    }
    for (int i = 1; i < m; i++)
        move_nodes(g, into, set[i]);
}

void sched_merge(Graph *g, int into, int from) {
    FU_ASSERT(into >= 0 && into < g->nkernels && from >= 0 && from < g->nkernels);
    if (into == from)
        return;
    sched_merge_set(g, into, &from, 1);
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
    g->sched = NULL;
}

/* ---- graph edits: the rewrite passes ------------------------------------- */

/*
 * A rewrite pass (ir_rewrite_all) tries a pattern at every node in order;
 * a rewrite (ir_replace) puts the new node where the old one was and
 * removes what became dead.  Renumbering the graph, eliminating dead code
 * over all of it and starting the scan over after every rewrite made these
 * passes quadratic in the size of the block.  Instead, during a pass:
 *  - a removed node leaves a hole (NULL) in g->nodes, so every other node
 *    keeps its position; ir_rewrite_all closes the holes once, at the end;
 *  - removal goes by reference count (nuses): the graph is acyclic and held
 *    no dead node before, so the nodes whose count drops to zero are
 *    exactly those dead-code elimination would remove (constants included);
 *  - the user index is patched where users changed, not rebuilt;
 *  - messages name a node by the number it will have once the holes are
 *    closed (its position less the holes before it: a Fenwick tree);
 *  - the scan resumes at the lowest position the rewrite can have changed
 *    the outcome of, not at 0.  A pattern is matched from the node it is
 *    tried at up through operands (their op, shape, attributes and nuses;
 *    never the nuses or users of a source), and down at most
 *    FU_VIEW_CHAIN reshapes and transposes of its result (attention's
 *    output side).  A node before every removed node, before every
 *    non-source node whose nuses or users changed, and before the head of
 *    each one's reshape/transpose chain sees what it saw when it was last
 *    tried, under the same numbers: it would be refused again with the
 *    same notes, which fuse_note drops as duplicates.  So the graph and
 *    the notes are the ones a scan from 0 after every rewrite gives.
 */
struct Rewrite {
    int n;              /* g->nnodes during the pass */
    int *holes;         /* Fenwick tree: a 1 at every hole's position */
    int low;            /* where the scan resumes after the last ir_replace */
    bool swept;         /* unused constants removed (the first ir_replace does it) */
    Node **stack;       /* nodes removed whose operands are still to drop */
    int nstack, capstack;
    Node **touched;     /* live nodes whose users changed */
    int ntouched, captouched;
};

static void hole_add(struct Rewrite *rw, int pos) {
    for (int i = pos + 1; i <= rw->n; i += i & -i)
        rw->holes[i]++;
}

static int holes_before(const struct Rewrite *rw, int pos) {
    int s = 0;
    for (int i = pos; i > 0; i -= i & -i)
        s += rw->holes[i];
    return s;
}

static void push(Node ***v, int *n, int *cap, Node *x) {
    if (*n == *cap) {
        int ncap = *cap ? 2 * *cap : 16;
        Node **p = fu_alloc(sizeof *p * (size_t)ncap);
        if (*n)
            memcpy(p, *v, sizeof *p * (size_t)*n);
        *v = p;
        *cap = ncap;
    }
    (*v)[(*n)++] = x;
}

/* The first node of the reshape/transpose chain that ends in x. */
static int chain_head(const Node *x) {
    for (int steps = 0; steps < FU_VIEW_CHAIN && (x->op == OP_RESHAPE || x->op == OP_TRANSPOSE); steps++)
        x = x->in[0];
    return x->id;
}

static void lower(struct Rewrite *rw, const Node *x) {
    int at = chain_head(x);
    if (at < rw->low)
        rw->low = at;
}

static void remove_node(Graph *g, Node *x) {
    struct Rewrite *rw = g->rw;
    FU_ASSERT(g->nodes[x->id] == x);
    g->nodes[x->id] = NULL;
    hole_add(rw, x->id);
    lower(rw, x);
    push(&rw->stack, &rw->nstack, &rw->capstack, x);
}

/* x lost a consumer (or gained one: nw) */
static void touch(Graph *g, Node *x) {
    struct Rewrite *rw = g->rw;
    if (op_info[x->op].cat != CAT_SOURCE)
        lower(rw, x);
    push(&rw->touched, &rw->ntouched, &rw->captouched, x);
}

/* What dead-code elimination keeps however few its consumers: sources
 * other than constants, outputs, and appends (they write the caches). */
static bool is_root(const Node *x) {
    return (op_info[x->op].cat == CAT_SOURCE && x->op != OP_CONST) || x->op == OP_OUTPUT ||
           x->op == OP_APPEND;
}

/* Drops dead x's uses of its operands, and every node that leaves dead. */
static void drop_uses(Graph *g, Node *x) {
    struct Rewrite *rw = g->rw;
    push(&rw->stack, &rw->nstack, &rw->capstack, x);
    while (rw->nstack) {
        Node *d = rw->stack[--rw->nstack];
        for (int j = 0; j < d->nin; j++) {
            Node *y = d->in[j];
            FU_ASSERT(y->nuses > 0);
            if (--y->nuses == 0 && !is_root(y))
                remove_node(g, y);
            else
                touch(g, y);
        }
    }
}

/* Brings the user list of live x up to date: no removed users, and nw if
 * it reads x, in node order. */
static void patch_users(Graph *g, Node *x, Node *nw) {
    struct UserIndex *u = g->users;
    if (!u || u->n != g->nnodes || g->nodes[x->id] != x)
        return;
    Node **l = u->list[x->id];
    int c = u->cnt[x->id], k = 0;
    bool want = false, have = false;
    for (int j = 0; j < nw->nin; j++)
        want |= nw->in[j] == x;
    for (int i = 0; i < c; i++) {
        have |= l[i] == nw;
        if (g->nodes[l[i]->id] == l[i])
            l[k++] = l[i];
    }
    if (want && !have) {
        Node **p = fu_alloc(sizeof *p * (size_t)(k + 1));
        int i = 0, m = 0;
        while (i < k && l[i]->id < nw->id)
            p[m++] = l[i++];
        p[m++] = nw;
        while (i < k)
            p[m++] = l[i++];
        l = p;
        k = m;
    }
    u->list[x->id] = l;
    u->cnt[x->id] = k;
}

void ir_replace(Graph *g, Node *old, Node *nw) {
    struct Rewrite *rw = g->rw;
    FU_ASSERT(rw && g->nnodes == rw->n + 1 && g->nodes[rw->n] == nw);
    FU_ASSERT(old->id >= 0 && old->id < rw->n && g->nodes[old->id] == old);
    for (int j = 0; j < nw->nin; j++)
        FU_ASSERT(nw->in[j]->id < old->id && g->nodes[nw->in[j]->id] == nw->in[j]);
    g->nnodes = rw->n;          /* nw leaves the end of the list for old's place */
    int at = old->id;
    rw->low = at;
    rw->ntouched = 0;
    if (!rw->swept) {
        /* a constant nothing reads is dead too (the front end's dce keeps sources) */
        for (int i = 0; i < rw->n; i++)
            if (g->nodes[i] && g->nodes[i]->op == OP_CONST && g->nodes[i]->nuses == 0)
                remove_node(g, g->nodes[i]);
        rw->nstack = 0;
        rw->swept = true;
    }
    Node **users;
    int nu = ir_users(g, old, &users);
    for (int i = 0; i < nu; i++)
        for (int j = 0; j < users[i]->nin; j++)
            if (users[i]->in[j] == old) {
                users[i]->in[j] = nw;
                nw->nuses++;
            }
    FU_ASSERT(nw->nuses == old->nuses);
    old->nuses = 0;
    nw->id = at;
    g->nodes[at] = nw;          /* old's consumers, and so its user list, are nw's now */
    if (!nw->label)
        nw->label = old->label;
    for (int j = 0; j < nw->nin; j++) {
        nw->in[j]->nuses++;
        touch(g, nw->in[j]);
    }
    drop_uses(g, old);
    for (int i = 0; i < rw->ntouched; i++)
        patch_users(g, rw->touched[i], nw);
}

/* FUSEC_CHECK_REWRITES=1 (the test suites set it): after every rewrite,
 * try every node before the resume point again, as a scan from 0 would,
 * and stop with an internal error if one now matches or notes something
 * new.  Quadratic; for the small blocks of the tests. */
static void recheck(Graph *g, bool (*try_at)(Graph *g, Node *n), int resume) {
    for (int j = 0; j < resume; j++) {
        Node *n = g->nodes[j];
        int notes = g->nfuse_notes;
        if (n && (try_at(g, n) || g->nfuse_notes != notes))
            fu_internal(__FILE__, __LINE__, "a rewrite pass resumed at position %d, past position %d, whose match it changed: %s",
                        resume, j, notes < g->nfuse_notes ? g->fuse_notes[notes] : "it now matches");
    }
}

void ir_rewrite_all(Graph *g, bool (*try_at)(Graph *g, Node *n)) {
    FU_ASSERT(!g->rw);
    ir_recount(g);
    struct Rewrite *rw = fu_alloc(sizeof *rw);
    rw->n = g->nnodes;
    rw->holes = fu_alloc(sizeof *rw->holes * (size_t)(g->nnodes + 1));
    g->rw = rw;
    const char *env = getenv("FUSEC_CHECK_REWRITES");
    bool check = env && strcmp(env, "1") == 0;
    for (int i = 0; i < g->nnodes; i++) {
        Node *n = g->nodes[i];
        if (n && try_at(g, n)) {
            int resume = rw->low < i ? rw->low : i;
            if (check)
                recheck(g, try_at, resume);
            i = resume - 1;
        }
    }
    g->rw = NULL;
    int k = 0;
    for (int i = 0; i < g->nnodes; i++)
        if (g->nodes[i]) {
            g->nodes[k] = g->nodes[i];
            g->nodes[k]->id = k;
            k++;
        }
    if (k != g->nnodes)
        g->users = NULL;
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
    if (!g->note_set)
        g->note_set = strmap_new();
    if (strmap_has(g->note_set, s))
        return;
    strmap_put(g->note_set, s, NULL);
    if ((g->nfuse_notes & (g->nfuse_notes - 1)) == 0) {
        const char **notes = fu_alloc(sizeof *notes * (size_t)(g->nfuse_notes ? 2 * g->nfuse_notes : 1));
        if (g->nfuse_notes)
            memcpy(notes, g->fuse_notes, sizeof *notes * (size_t)g->nfuse_notes);
        g->fuse_notes = notes;
    }
    g->fuse_notes[g->nfuse_notes++] = s;
}

bool sched_try_merge(Graph *g, int into, int from) {
    if (!sched_can_merge(g, into, from))
        return false;
    sched_merge(g, into, from);
    return true;
}

const char *fuse_name(const Graph *g, const Node *n) {
    if (n->label)
        return n->label;
    if (n->name)
        return n->name;
    /* during a rewrite pass: the number it will have once the holes are closed */
    return fu_format("%%%d", g->rw ? n->id - holes_before(g->rw, n->id) : n->id);
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
