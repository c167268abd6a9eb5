/*
 * pipeline.c - the compiler pipeline, pass after pass with the verifier
 * between them (QBE's main.c).  `fusec` and `fusec check` both call it so
 * there is exactly one definition of what compiling a block means.
 */
#include "fusec.h"

Graph *fusec_compile(const char *path, const char *block, const Options *o) {
    Graph *g = fe_compile_file(path, block);
    if (!g)
        return NULL;
    ir_verify(g, "sema");
    ir_dce(g);
    ir_verify(g, "dce");
    pass_schedule(g, o);
    ir_verify(g, "schedule");
    return g;
}
