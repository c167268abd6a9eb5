/*
 * pipeline.c - the compiler pipeline, pass after pass with the verifier
 * between them (QBE's main.c).  `fusec` (main.c) and `fusec check` (check.c)
 * both call it, so there is exactly one definition of compiling a block.
 */
#include "fusec.h"

Graph *compile_front(const char *path, const char *block) {
    Graph *g = fe_compile_file(path, block);
    if (!g)
        return NULL;
    ir_verify(g, "sema");
    ir_dce(g);
    ir_verify(g, "dce");
    return g;
}

bool linear_bf16(const Node *n) { return n->op == OP_LINEAR && n->i[1] == 1; }

void pass_mark_compute(Graph *g, const Options *o) {
    if (!o->compute_bf16)
        return;
    for (int i = 0; i < g->nnodes; i++) {
        Node *n = g->nodes[i];
        DType w = n->op == OP_LINEAR ? n->in[1]->dtype : DT_F32;
        if (n->op == OP_LINEAR && (w == DT_F32 || w == DT_BF16 || w == DT_F16))
            n->i[1] = 1;
    }
}

void compile_passes(Graph *g, const Options *o) {
    pass_mark_compute(g, o);
    /* rewrites of primitive spellings (fuse_*.c; nothing at -O0) */
    pass_rewrite_norm(g, o);
    ir_verify(g, "rewrite norm");
    pass_rewrite_softmax(g, o);
    ir_verify(g, "rewrite softmax");
    pass_rewrite_attention(g, o);
    ir_verify(g, "rewrite attention");
    pass_schedule(g, o);
    ir_verify(g, "schedule");
    pass_fold_weights(g, o);
    ir_verify(g, "fold weights");
    /* fusion: the biggest patterns claim their nodes first */
    pass_fuse_attention(g, o);
    ir_verify(g, "fuse attention");
    pass_fuse_mlp(g, o);
    ir_verify(g, "fuse mlp");
    pass_fuse_softmax(g, o);
    ir_verify(g, "fuse softmax");
    pass_fuse_norm(g, o);
    ir_verify(g, "fuse norm");
    pass_fuse_epilogue(g, o);
    ir_verify(g, "fuse epilogue");
    pass_fuse_elementwise(g, o);
    ir_verify(g, "fuse elementwise");
}

static int tp_n = 1, tp_rank = 0;

void compile_set_tp(int n, int rank) {
    tp_n = n;
    tp_rank = rank;
}

Graph *compile_pipeline(const char *path, const char *block, const Options *o) {
    Graph *g = compile_front(path, block);
    if (g && tp_n > 1) {
        if (!pass_tp(g, tp_n, tp_rank))
            return NULL;
        ir_verify(g, "tp");
    }
    if (g)
        compile_passes(g, o);
    return g;
}
