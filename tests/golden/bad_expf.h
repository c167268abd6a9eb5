/*
 * bad_expf.h - a negative control for `fusec check` (tests/golden/run.sh):
 * forced into the harness build with CC="cc -include tests/golden/bad_expf.h",
 * it makes every expf of the generated C 0.1% too large, a kernel bug that
 * silu, sigmoid and softmax all feel.  The check must fail.
 */
#include <math.h>
#define expf(x) (1.001f * expf(x))
