/*
 * csys seccomp: compile a syscall filter with libseccomp (in the parent), install the compiled
 * BPF program (in the child, after clone/fork), and a probe for tests.
 *
 * Swift turns a Docker/podman/OCI-style JSON profile into a flat list of csys_seccomp_rule
 * (already filtered by capabilities, architecture and kernel version) and calls
 * csys_seccomp_compile once per container; the child only calls csys_seccomp_install.
 */
#ifndef CSYS_SECCOMP_H
#define CSYS_SECCOMP_H

#include "csys.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One argument comparison: scmp_arg_cmp. For SCMP_CMP_MASKED_EQ, value is the mask and
 * value_two the value compared with (arg & mask). */
typedef struct csys_seccomp_arg {
    unsigned int index; /* 0..5 */
    int op;             /* SCMP_CMP_* values: NE=1 LT=2 LE=3 EQ=4 GE=5 GT=6 MASKED_EQ=7 */
    uint64_t value;
    uint64_t value_two;
} csys_seccomp_arg;

/* One rule: the syscall called `name` gets `action` when every comparison in args holds. */
typedef struct csys_seccomp_rule {
    const char *name;
    uint32_t action; /* SCMP_ACT_* encoded value, e.g. SCMP_ACT_ALLOW, SCMP_ACT_ERRNO(n) */
    const csys_seccomp_arg *args;
    int nargs;
} csys_seccomp_rule;

/*
 * Build a filter with default_action and the rules, in order, for the native architecture
 * (plus SCMP_ARCH_X86 and SCMP_ARCH_X32 on x86_64), and export it as a BPF program
 * (an array of struct sock_filter). Names libseccomp does not know are skipped, as runc and
 * crun do; so are rules whose action equals the default action. NO_NEW_PRIVS is not part of
 * the filter (the runtime sets it itself). On success *bpf is a malloc'd buffer (free it with
 * csys_free) of *len bytes and 0 is returned; on failure -1 with err set.
 * Parent only: libseccomp allocates.
 */
int csys_seccomp_compile(uint32_t default_action, const csys_seccomp_rule *rules, int nrules,
                         unsigned char **bpf, size_t *len, csys_error *err);

/*
 * Install a program made by csys_seccomp_compile on the calling thread:
 * prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog). Safe after fork/clone: no allocation,
 * no locks, one syscall. The caller must have set PR_SET_NO_NEW_PRIVS (or hold
 * CAP_SYS_ADMIN). Returns 0, or -1 with errno (EINVAL for a malformed length).
 */
int csys_seccomp_install(const unsigned char *bpf, size_t len);

/* "2.5.4": part of the key of cached compiled programs */
const char *csys_seccomp_library_version(void);

/*
 * For tests: fork a child that sets PR_SET_NO_NEW_PRIVS, installs the program (none when
 * bpf is NULL or len is 0: a baseline run), then makes each named call with harmless
 * arguments and records the errno it produced (0 on success). The results are passed back
 * through shared memory, so a profile that denies write(2) still reports.
 *
 * errnos_out[i] is the errno of syscalls_to_try[i]; for calls the child never reached because
 * it was killed (SCMP_ACT_KILL*, SCMP_ACT_TRAP) it is -(the signal number), and if the child
 * could not install the filter every entry is -1000 - errno.
 * Returns 0, or -1 with errno (EINVAL: a name not in the list below; or fork/mmap failure).
 *
 * Names (what is called):
 *   getpid, gettid, getcwd(buf, 4096), uname
 *   unshare(CLONE_NEWUTS)                      setns(-1, 0) -> EBADF
 *   mount("none", <missing path>, "tmpfs")     umount2(<missing path>, 0)
 *   keyctl(0x7fffffff)                         add_key("ctr_probe_no_such_type", ...) -> ENODEV
 *   reboot(0, 0, 0) (bad magic) -> EINVAL      kexec_load(0, 0, NULL, bad arch) -> EINVAL
 *   swapon(<missing path>), swapoff(<missing path>)
 *   clock_settime(CLOCK_MONOTONIC, ...) -> EINVAL (never changes the clock)
 *   settimeofday(NULL, NULL) -> 0 (sets nothing)
 *   personality(0xffffffff) (query)            personality_noaslr: personality(ADDR_NO_RANDOMIZE)
 *   ptrace(PTRACE_PEEKDATA, -1) -> ESRCH       sethostname(buf, 1000) -> EINVAL
 *   setdomainname(buf, 1000) -> EINVAL         chroot(<missing path>), acct(<missing path>)
 *   delete_module("ctr_probe_no_such_module", O_NONBLOCK)
 *   bpf(0x7fffffff, NULL, 0)                   userfaultfd(0x7fffffff) -> EINVAL
 *   io_uring_setup(0, NULL)                    clone3(NULL, 0) -> EINVAL
 *   open_by_handle_at(-1, NULL, 0)             kcmp(getpid(), getpid(), 0x7fffffff)
 *   socket_inet (AF_INET, SOCK_DGRAM)          socket_vsock (AF_VSOCK, SOCK_STREAM)
 *   socket_alg (AF_ALG, SOCK_SEQPACKET)        socket_netlink_route (AF_NETLINK, NETLINK_ROUTE)
 *   socket_netlink_audit (AF_NETLINK, NETLINK_AUDIT)
 * (<missing path> is /proc/self/ctr-seccomp-probe-missing, which can never exist.)
 */
int csys_seccomp_probe(const unsigned char *bpf, size_t len, const char *const *syscalls_to_try,
                       int n, int *errnos_out);

#ifdef __cplusplus
}
#endif

#endif
