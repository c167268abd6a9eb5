/*
 * ir.c - building the graph IR.
 *
 * A Graph is a list of Nodes in topological order (every node's inputs come
 * before it), plus the block's interface: inputs, weights, caches and outputs
 * in declaration order, which is also the order of the generated C API.
 * Node types are set by shape.c; this file only owns structure.
 */
#include "fusec.h"

#include <string.h>

const OpInfo op_info[OP_COUNT] = {
#define OP(id, name, nmin, nmax, cat) [OP_##id] = {name, nmin, nmax, cat},
#include "ops.def"
#undef OP
};

/* The op table and the enum are expanded from the same file, but the count
 * is checked anyway so a hand-edited table cannot drift (ggml's habit). */
#define OP(id, name, nmin, nmax, cat) +1
typedef char op_table_size_check[(0
#include "ops.def"
    ) == OP_COUNT ? 1 : -1];
#undef OP

int op_lookup(const char *name) {
    for (int i = 0; i < OP_COUNT; i++)
        if (strcmp(op_info[i].name, name) == 0)
            return i;
    return -1;
}

Graph *ir_graph_new(const char *name) {
    Graph *g = fu_alloc(sizeof *g);
    g->name = fu_strdup(name);
    g->cache_sym = -1;
    return g;
}

int ir_add_sym(Graph *g, const char *name) {
    if (g->nsyms == FU_MAX_SYMS)
        return -1;
    g->sym_names[g->nsyms] = fu_strdup(name);
    return g->nsyms++;
}

int ir_find_sym(const Graph *g, const char *name) {
    for (int s = 0; s < g->nsyms; s++)
        if (strcmp(g->sym_names[s], name) == 0)
            return s;
    return -1;
}

/* Grows an arena array of pointers (old storage stays in the arena). */
static void **grow(void **old, int n, int *cap) {
    if (n < *cap)
        return old;
    int ncap = *cap ? *cap * 2 : 16;
    void **p = fu_alloc(sizeof(void *) * (size_t)ncap);
    if (n)
        memcpy(p, old, sizeof(void *) * (size_t)n);
    *cap = ncap;
    return p;
}

void ir_add_const_dim(Graph *g, const char *name, int64_t value) {
    if (!g->const_index)
        g->const_index = strmap_new();
    intptr_t at = (intptr_t)strmap_get(g->const_index, name);
    if (at) {
        g->const_values[at - 1] = value;
        return;
    }
    /* arrays grow to the next power of two */
    if ((g->nconsts & (g->nconsts - 1)) == 0) {
        size_t cap = g->nconsts ? 2 * (size_t)g->nconsts : 1;
        const char **names = fu_alloc(sizeof(char *) * cap);
        int64_t *values = fu_alloc(sizeof(int64_t) * cap);
        if (g->nconsts) {
            memcpy(names, g->const_names, sizeof(char *) * (size_t)g->nconsts);
            memcpy(values, g->const_values, sizeof(int64_t) * (size_t)g->nconsts);
        }
        g->const_names = names;
        g->const_values = values;
    }
    g->const_names[g->nconsts] = fu_strdup(name);
    g->const_values[g->nconsts] = value;
    g->nconsts++;
    strmap_put(g->const_index, g->const_names[g->nconsts - 1], (void *)(intptr_t)g->nconsts);
}

/* Appends n to one of the interface lists, which grow to the next power of
 * two (a block may have thousands of weights). */
static Node **list_push(Node **list, int *count, Node *n) {
    if ((*count & (*count - 1)) == 0) {
        Node **p = fu_alloc(sizeof(Node *) * (size_t)(*count ? 2 * *count : 1));
        if (*count)
            memcpy(p, list, sizeof(Node *) * (size_t)*count);
        list = p;
    }
    list[(*count)++] = n;
    return list;
}

Node *ir_node(Graph *g, Op op, int nin, Node *const *in, SrcLoc loc) {
    FU_ASSERT(op >= 0 && op < OP_COUNT);
    FU_ASSERT(nin >= 0 && nin <= FU_MAX_IN);
    Node *n = fu_alloc(sizeof *n);
    n->op = op;
    n->nin = nin;
    for (int i = 0; i < nin; i++)
        n->in[i] = in[i];
    n->loc = loc;
    n->kernel = -1;
    g->nodes = (Node **)grow((void **)g->nodes, g->nnodes, &g->cap);
    n->id = g->nnodes;
    g->nodes[g->nnodes++] = n;
    if (!g->rw)
        g->users = NULL;        /* (a rewrite's ir_replace keeps the index up to date) */
    switch (op) {
    case OP_INPUT: g->inputs = list_push(g->inputs, &g->ninputs, n); break;
    case OP_WEIGHT: g->weights = list_push(g->weights, &g->nweights, n); break;
    case OP_CACHE: g->caches = list_push(g->caches, &g->ncaches, n); break;
    case OP_OUTPUT: g->outputs = list_push(g->outputs, &g->noutputs, n); break;
    default: break;
    }
    return n;
}

Node *ir_convert(Graph *g, Node *x, Node *before) {
    FU_ASSERT(g->nnodes > 0 && g->nodes[g->nnodes - 1] == before);
    for (int i = x->id + 1; i < before->id; i++)
        if (g->nodes[i]->op == OP_CONVERT && g->nodes[i]->in[0] == x)
            return g->nodes[i];
    Node *c = ir_node(g, OP_CONVERT, 1, &x, before->loc);
    char why[256];
    if (!ir_infer(c, g, why, sizeof why))
        fu_internal(__FILE__, __LINE__, "ir_convert: %s", why);
    /* c goes where `before` was, `before` after it */
    g->nodes[before->id] = c;
    g->nodes[c->id] = before;
    c->id--;
    before->id++;
    return c;
}

void ir_recount(Graph *g) {
    for (int i = 0; i < g->nnodes; i++)
        g->nodes[i]->nuses = 0;
    for (int i = 0; i < g->nnodes; i++)
        for (int j = 0; j < g->nodes[i]->nin; j++)
            g->nodes[i]->in[j]->nuses++;
}

/* Interface nodes and appends (they write the cache) are roots; everything
 * else lives only if a root depends on it.  Ids are renumbered densely so
 * dumps stay readable. */
void ir_dce(Graph *g) {
    bool *live = fu_alloc(sizeof(bool) * (size_t)g->nnodes);
    for (int i = g->nnodes - 1; i >= 0; i--) {
        Node *n = g->nodes[i];
        if (op_info[n->op].cat == CAT_SOURCE || n->op == OP_OUTPUT || n->op == OP_APPEND)
            live[i] = true;
        if (!live[i])
            continue;
        for (int j = 0; j < n->nin; j++)
            live[n->in[j]->id] = true;
    }
    int k = 0;
    for (int i = 0; i < g->nnodes; i++)
        if (live[i]) {
            g->nodes[k] = g->nodes[i];
            g->nodes[k]->id = k;
            k++;
        }
    g->nnodes = k;
    g->users = NULL;
    ir_recount(g);
}

int64_t ir_numel(const Node *n, const int64_t *syms) {
    Dim e = dim_const(1);
    for (int d = 0; d < n->rank; d++)
        if (!dim_mul(e, dim_const(dim_eval(n->shape[d], syms)), &e))
            return INT64_MAX;
    return e.c;
}
