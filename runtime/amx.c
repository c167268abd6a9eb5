/*
 * amx.c - the Linux permission for the AMX tile data state.
 *
 * The AMX tile registers are 8 KiB of state that Linux does not give a
 * process by default: their first use raises #NM and, without permission,
 * the kernel kills the process with SIGILL.  A process asks once with
 * arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA); the permission then
 * holds for every thread, existing and future.  The kernel refuses on a CPU
 * or kernel without AMX (EOPNOTSUPP, EINVAL), and when a thread's signal
 * stack (sigaltstack) is too small for the larger signal frame (ENOSPC).
 *
 * The answer is asked once and cached with atomics (threads that call
 * forward for the first time at once may both ask; the kernel's answer is
 * the same for both).  cpu.c asks during detection, so fr_cpu_features
 * reports AMX only where tile instructions may run.
 */
#include "fusec_rt.h"

#if defined(__linux__) && (defined(__x86_64__) || defined(__i386__))
#include <errno.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ARCH_GET_XCOMP_PERM 0x1022
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

/* 0: not asked yet; 1: granted; 2 + errno: refused. */
static int answer;

static int ask(void) {
    unsigned long perm = 0;
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0)
        return 2 + errno;
    /* a kernel that says yes must also list the state as permitted */
    if (syscall(SYS_arch_prctl, ARCH_GET_XCOMP_PERM, &perm) != 0)
        return 2 + errno;
    return (perm >> XFEATURE_XTILEDATA) & 1 ? 1 : 2 + EPERM;
}

int fr_amx_enable(fr_err *err) {
    int a = __atomic_load_n(&answer, __ATOMIC_ACQUIRE);
    if (a == 0) {
        a = ask();
        __atomic_store_n(&answer, a, __ATOMIC_RELEASE);
    }
    if (a == 1)
        return FR_OK;
    int e = a - 2;
    return fr_seterr(err, FR_EINVAL,
                     "AMX: Linux refused the tile data state (arch_prctl ARCH_REQ_XCOMP_PERM: %s)%s", strerror(e),
                     e == EOPNOTSUPP || e == EINVAL ? "; this CPU or kernel has no AMX (Linux 5.16 or later needed)"
                     : e == ENOSPC ? "; a signal stack (sigaltstack) is too small for the AMX signal frame"
                                   : "");
}
#else
int fr_amx_enable(fr_err *err) {
    return fr_seterr(err, FR_EINVAL, "AMX: tile instructions need x86-64 Linux (the tile data state is requested "
                                     "with arch_prctl)");
}
#endif
