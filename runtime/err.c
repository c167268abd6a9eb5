/*
 * err.c - the runtime's one error channel.
 *
 * Every fallible runtime call returns 0 or a negative FR_E* code and, when the
 * caller passed an fr_err, leaves one self-contained message in it.  Messages
 * are formatted once, at the point that knows the file, the tensor and the
 * problem, so callers only print err->msg.  A message longer than the buffer
 * is truncated, never overrun.
 */
#include <stdarg.h>
#include <stdio.h>

#include "fusec_rt.h"

int fr_seterr(fr_err *err, int code, const char *fmt, ...)
{
    va_list ap;

    if (!err)
        return code;
    err->code = code;
    err->msg[0] = '\0';
    if (!fmt)
        return code;
    va_start(ap, fmt);
    /* A negative return (an encoding error) leaves msg as vsnprintf left it,
     * which is at worst empty: the code still tells the caller what failed. */
    if (vsnprintf(err->msg, sizeof err->msg, fmt, ap) < 0)
        err->msg[0] = '\0';
    va_end(ap);
    return code;
}
