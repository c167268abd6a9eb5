/*
 * err.c - the runtime's one error channel.
 *
 * Every fallible runtime call returns 0 or a negative FR_E* code and, when the
 * caller passed an fr_err, leaves one self-contained message in it.  Messages
 * are formatted once, at the point that knows the file, the tensor and the
 * problem, so callers only print err->msg.  A message longer than the buffer
 * is truncated, never overrun.
 *
 * The same message is also this thread's last error (fr_last_error): the
 * generated NAME_forward has no fr_err parameter, to keep the call simple,
 * and reports the cause there instead.  It is thread-local, so concurrent
 * callers each read their own.
 */
#include <stdarg.h>
#include <stdio.h>

#include "fusec_rt.h"

static __thread char last_error[512];

int fr_seterr(fr_err *err, int code, const char *fmt, ...)
{
    va_list ap;

    /* A negative return (an encoding error) leaves the text as vsnprintf left
     * it, which is at worst empty: the code still tells the caller what failed. */
    last_error[0] = '\0';
    if (fmt) {
        va_start(ap, fmt);
        if (vsnprintf(last_error, sizeof last_error, fmt, ap) < 0)
            last_error[0] = '\0';
        va_end(ap);
    }
    if (err) {
        err->code = code;
        snprintf(err->msg, sizeof err->msg, "%s", last_error);
    }
    return code;
}

const char *fr_last_error(void)
{
    return last_error;
}

const char *fr_strerror(int code)
{
    switch (code) {
    case FR_OK: return "success";
    case FR_EIO: return "input/output error";
    case FR_EFORMAT: return "not a valid safetensors file";
    case FR_ENOTFOUND: return "tensor not found";
    case FR_ETYPE: return "wrong dtype";
    case FR_ESHAPE: return "wrong shape";
    case FR_ENOMEM: return "out of memory";
    case FR_EINVAL: return "invalid argument";
    case FR_ENULL: return "NULL pointer or unbound weight";
    case FR_EDIM: return "dimension out of range";
    case FR_ECAPACITY: return "cache capacity exceeded";
    case FR_ECPU: return "CPU lacks a feature the target needs";
    case FR_EWORKSPACE: return "workspace too small or misaligned";
    case FR_EINDEX: return "index out of range";
    case FR_ECOMM: return "tensor-parallel communication failed";
    default: return "unknown error code";
    }
}
