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

void compile_passes(Graph *g, const Options *o) {
    pass_schedule(g, o);
    ir_verify(g, "schedule");
}

Graph *compile_pipeline(const char *path, const char *block, const Options *o) {
    Graph *g = compile_front(path, block);
    if (g)
        compile_passes(g, o);
    return g;
}
