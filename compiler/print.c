/*
 * print.c - the textual IR, as `fusec --emit=ir` shows it.
 *
 *   block llama_layer(T, P)
 *     %3 = rms_norm(%0, %1) {eps=1e-05} : f32[T, 256]  @k0  # h
 *
 * One line per node: id, op, operands, attributes (only those the op uses),
 * type, the kernel it was scheduled into, and the DSL name it came from.
 * The output is deterministic so tests can compare dumps.
 */
#include "fusec.h"

#include <stdlib.h>

void ir_type_str(Buf *b, const Node *n, const Graph *g) {
    buf_printf(b, "%s[", dtype_name(n->dtype));
    for (int d = 0; d < n->rank; d++) {
        if (d)
            buf_puts(b, ", ");
        dim_print(b, n->shape[d], g ? g->sym_names : NULL);
    }
    buf_puts(b, "]");
}

static void print_attrs(Buf *b, const Node *n) {
    switch (n->op) {
    case OP_CONST: buf_printf(b, " %.9g", n->f[0]); break;
    case OP_SUM: case OP_MAX: case OP_MEAN: case OP_CONCAT:
        buf_printf(b, " {axis=%lld}", (long long)n->i[0]);
        break;
    case OP_MATMUL:
        if (n->i[0])
            buf_puts(b, " {transpose_b}");
        break;
    case OP_LINEAR:
        buf_printf(b, " {layout=%s%s}", n->i[0] ? "in_out" : "out_in", n->i[1] ? ", compute=bf16" : "");
        break;
    case OP_TRANSPOSE:
        buf_puts(b, " {perm=[");
        for (int a = 0; a < n->in[0]->rank; a++)
            buf_printf(b, "%s%lld", a ? ", " : "", (long long)n->i[a]);
        buf_puts(b, "]}");
        break;
    case OP_SLICE:
        buf_printf(b, " {axis=%lld, start=%lld, len=%lld}", (long long)n->i[0], (long long)n->i[1],
                   (long long)n->i[2]);
        break;
    case OP_RMS_NORM: case OP_LAYER_NORM: buf_printf(b, " {eps=%.9g}", n->f[0]); break;
    case OP_ROPE: buf_printf(b, " {head_dim=%lld, theta=%.9g}", (long long)n->i[0], n->f[0]); break;
    case OP_ATTENTION:
        buf_printf(b, " {heads=%lld, kv_heads=%lld, head_dim=%lld, causal=%s, scale=%.9g",
                   (long long)n->i[0], (long long)n->i[1], (long long)n->i[2], n->i[3] ? "true" : "false",
                   n->f[0]);
        if (n->f[1] > 0)
            buf_printf(b, ", softcap=%.9g", n->f[1]);
        if (n->i[4])
            buf_printf(b, ", window=%lld", (long long)n->i[4]);
        buf_puts(b, "}");
        break;
    case OP_CAST: buf_printf(b, " {to=%s}", dtype_name((DType)n->i[0])); break;
    case OP_TOPK: buf_printf(b, " {k=%lld}", (long long)n->i[0]); break;
    case OP_ALLREDUCE: buf_printf(b, " {ranks=%lld}", (long long)n->i[0]); break;
    case OP_EMBEDDING:
        if (n->i[1] > 0)
            buf_printf(b, " {rows=%lld.., of=%lld}", (long long)n->i[0], (long long)n->i[1]);
        break;
    case OP_WEIGHT:
        if (n->tp_axis)
            buf_printf(b, " {tp: axis %d from %lld of %lld}", n->tp_axis - 1, (long long)n->tp_start,
                       (long long)n->tp_full);
        break;
    case OP_MOE_UP: case OP_MOE_DOWN:
        if (n->i[0] > 0)
            buf_printf(b, " {k=%lld, norm_topk=%s}", (long long)n->i[0], n->i[1] ? "true" : "false");
        break;
    default: break;
    }
}

static void print_node(Buf *b, const Node *n, const Graph *g) {
    buf_printf(b, "  %%%d = %s", n->id, op_info[n->op].name);
    if (n->name)
        buf_printf(b, " \"%s\"", n->name);
    if (n->nin) {
        buf_puts(b, "(");
        for (int j = 0; j < n->nin; j++)
            buf_printf(b, "%s%%%d", j ? ", " : "", n->in[j]->id);
        buf_puts(b, ")");
    }
    print_attrs(b, n);
    buf_puts(b, " : ");
    ir_type_str(b, n, g);
    if (n->kernel >= 0)
        buf_printf(b, "  @k%d", n->kernel);
    if (n->label)
        buf_printf(b, "  # %s", n->label);
    buf_puts(b, "\n");
}

void ir_print(FILE *out, const Graph *g) {
    Buf b = {0};
    buf_printf(&b, "block %s(", g->name);
    for (int s = 0; s < g->nsyms; s++)
        buf_printf(&b, "%s%s", s ? ", " : "", g->sym_names[s]);
    buf_puts(&b, ")\n");
    for (int i = 0; i < g->nnodes; i++)
        print_node(&b, g->nodes[i], g);
    fputs(b.data, out);
    free(b.data);
}
