/* seccomp: compile with libseccomp (parent), install a BPF program (child), probe (tests). */
#include "include/csys_seccomp.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ compile */

static int add_arch(scmp_filter_ctx ctx, uint32_t arch, const char *name, csys_error *err) {
    int rc = seccomp_arch_add(ctx, arch);
    if (rc == 0 || rc == -EEXIST) return 0;
    csys_set_error(err, -rc, "seccomp", "adding architecture %s to the seccomp filter: %s", name,
                   strerror(-rc));
    return -1;
}

static const char *op_name(int op) {
    switch (op) {
    case SCMP_CMP_NE: return "SCMP_CMP_NE";
    case SCMP_CMP_LT: return "SCMP_CMP_LT";
    case SCMP_CMP_LE: return "SCMP_CMP_LE";
    case SCMP_CMP_EQ: return "SCMP_CMP_EQ";
    case SCMP_CMP_GE: return "SCMP_CMP_GE";
    case SCMP_CMP_GT: return "SCMP_CMP_GT";
    case SCMP_CMP_MASKED_EQ: return "SCMP_CMP_MASKED_EQ";
    default: return "unknown";
    }
}

int csys_seccomp_compile(uint32_t default_action, const csys_seccomp_rule *rules, int nrules,
                         unsigned char **bpf, size_t *len, csys_error *err) {
    if (csys_load_seccomp(err) != 0) return -1;
    *bpf = NULL;
    *len = 0;
    if (nrules < 0 || (nrules > 0 && !rules)) {
        csys_set_error(err, EINVAL, "seccomp", "invalid seccomp rule list");
        return -1;
    }

    scmp_filter_ctx ctx = seccomp_init(default_action);
    if (!ctx) {
        csys_set_error(err, EINVAL, "seccomp",
                       "seccomp_init failed (default action 0x%08x not supported by libseccomp)",
                       default_action);
        return -1;
    }
    int ret = -1;
    int memfd = -1;
    unsigned char *buf = NULL;

    /* The runtime sets no_new_privs itself, before installing the program. */
    int rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
    if (rc < 0) {
        csys_set_error(err, -rc, "seccomp", "seccomp_attr_set(CTL_NNP): %s", strerror(-rc));
        goto out;
    }

    /* seccomp_init already added the native architecture. */
    if (seccomp_arch_native() == SCMP_ARCH_X86_64) {
        if (add_arch(ctx, SCMP_ARCH_X86, "SCMP_ARCH_X86", err) < 0) goto out;
        if (add_arch(ctx, SCMP_ARCH_X32, "SCMP_ARCH_X32", err) < 0) goto out;
    }

    for (int i = 0; i < nrules; i++) {
        const csys_seccomp_rule *r = &rules[i];
        if (!r->name || !*r->name) {
            csys_set_error(err, EINVAL, "seccomp", "seccomp rule %d has no syscall name", i);
            goto out;
        }
        if (r->nargs < 0 || r->nargs > 6 || (r->nargs > 0 && !r->args)) {
            csys_set_error(err, EINVAL, "seccomp", "seccomp rule for %s: invalid argument count %d",
                           r->name, r->nargs);
            goto out;
        }
        /* libseccomp refuses a rule that repeats the default action; it changes nothing. */
        if (r->action == default_action) continue;

        /* Unknown to this libseccomp (a newer or a foreign syscall): skip, as runc/crun do.
         * Names that only exist on a sub-architecture (e.g. "_llseek" on x86_64) resolve to
         * a negative pseudo number that libseccomp translates per architecture. */
        int nr = seccomp_syscall_resolve_name(r->name);
        if (nr == __NR_SCMP_ERROR) continue;

        struct scmp_arg_cmp cmps[6];
        for (int a = 0; a < r->nargs; a++) {
            const csys_seccomp_arg *ar = &r->args[a];
            if (ar->index > 5 || ar->op < SCMP_CMP_NE || ar->op > SCMP_CMP_MASKED_EQ) {
                csys_set_error(err, EINVAL, "seccomp",
                               "seccomp rule for %s: invalid argument comparison (index %u, op %d)",
                               r->name, ar->index, ar->op);
                goto out;
            }
            cmps[a].arg = ar->index;
            cmps[a].op = (enum scmp_compare)ar->op;
            cmps[a].datum_a = ar->value;
            cmps[a].datum_b = ar->value_two;
        }
        rc = seccomp_rule_add_array(ctx, r->action, nr, (unsigned int)r->nargs,
                                    r->nargs ? cmps : NULL);
        if (rc < 0) {
            char detail[256] = "";
            size_t off = 0;
            for (int a = 0; a < r->nargs && off < sizeof detail; a++) {
                int w = snprintf(detail + off, sizeof detail - off, "%s arg%u %s 0x%llx",
                                 a ? "," : " with", r->args[a].index, op_name(r->args[a].op),
                                 (unsigned long long)r->args[a].value);
                if (w < 0) break;
                off += (size_t)w;
            }
            csys_set_error(err, -rc, "seccomp", "adding seccomp rule for %s (action 0x%08x)%s: %s",
                           r->name, r->action, detail, strerror(-rc));
            goto out;
        }
    }

    memfd = memfd_create("csys-seccomp-bpf", MFD_CLOEXEC);
    if (memfd < 0) {
        csys_set_error(err, errno, "memfd_create", "memfd_create for the seccomp program: %s",
                       strerror(errno));
        goto out;
    }
    rc = seccomp_export_bpf(ctx, memfd);
    if (rc < 0) {
        csys_set_error(err, -rc, "seccomp", "seccomp_export_bpf: %s", strerror(-rc));
        goto out;
    }
    off_t size = lseek(memfd, 0, SEEK_END);
    if (size < 0 || lseek(memfd, 0, SEEK_SET) < 0) {
        csys_set_error(err, errno, "lseek", "seeking the exported seccomp program: %s",
                       strerror(errno));
        goto out;
    }
    if (size == 0 || size % (off_t)sizeof(struct sock_filter) != 0) {
        csys_set_error(err, EINVAL, "seccomp", "exported seccomp program has a bad size (%lld bytes)",
                       (long long)size);
        goto out;
    }
    if (size / (off_t)sizeof(struct sock_filter) > BPF_MAXINSNS) {
        csys_set_error(err, E2BIG, "seccomp",
                       "seccomp program too long: %lld instructions (the kernel takes %d)",
                       (long long)(size / (off_t)sizeof(struct sock_filter)), BPF_MAXINSNS);
        goto out;
    }
    buf = malloc((size_t)size);
    if (!buf) {
        csys_set_error(err, ENOMEM, "malloc", "out of memory for the seccomp program");
        goto out;
    }
    size_t got = 0;
    while (got < (size_t)size) {
        ssize_t n = read(memfd, buf + got, (size_t)size - got);
        if (n < 0) {
            if (errno == EINTR) continue;
            csys_set_error(err, errno, "read", "reading the exported seccomp program: %s",
                           strerror(errno));
            goto out;
        }
        if (n == 0) {
            csys_set_error(err, EIO, "read", "exported seccomp program is short");
            goto out;
        }
        got += (size_t)n;
    }
    *bpf = buf;
    *len = (size_t)size;
    buf = NULL;
    ret = 0;

out:
    free(buf);
    if (memfd >= 0) close(memfd);
    seccomp_release(ctx);
    return ret;
}

/* ------------------------------------------------------------------ install */

int csys_seccomp_install(const unsigned char *bpf, size_t len) {
    if (!bpf || len == 0 || len % sizeof(struct sock_filter) != 0 ||
        len / sizeof(struct sock_filter) > BPF_MAXINSNS) {
        errno = EINVAL;
        return -1;
    }
    struct sock_fprog prog;
    prog.len = (unsigned short)(len / sizeof(struct sock_filter));
    prog.filter = (struct sock_filter *)(uintptr_t)bpf;
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) == 0 ? 0 : -1;
}

/* ------------------------------------------------------------------ probe */

enum {
    P_GETPID = 1, P_GETTID, P_GETCWD, P_UNAME,
    P_UNSHARE, P_SETNS, P_MOUNT, P_UMOUNT2,
    P_KEYCTL, P_ADD_KEY, P_REBOOT, P_KEXEC_LOAD,
    P_SWAPON, P_SWAPOFF, P_CLOCK_SETTIME, P_SETTIMEOFDAY,
    P_PERSONALITY, P_PERSONALITY_NOASLR, P_PTRACE, P_SETHOSTNAME,
    P_SETDOMAINNAME, P_CHROOT, P_ACCT, P_DELETE_MODULE,
    P_BPF, P_USERFAULTFD, P_IO_URING_SETUP, P_CLONE3,
    P_OPEN_BY_HANDLE_AT, P_KCMP,
    P_SOCKET_INET, P_SOCKET_VSOCK, P_SOCKET_ALG, P_SOCKET_NETLINK_ROUTE, P_SOCKET_NETLINK_AUDIT,
};

static const struct { const char *name; int id; } probe_names[] = {
    {"getpid", P_GETPID}, {"gettid", P_GETTID}, {"getcwd", P_GETCWD}, {"uname", P_UNAME},
    {"unshare", P_UNSHARE}, {"setns", P_SETNS}, {"mount", P_MOUNT}, {"umount2", P_UMOUNT2},
    {"keyctl", P_KEYCTL}, {"add_key", P_ADD_KEY}, {"reboot", P_REBOOT},
    {"kexec_load", P_KEXEC_LOAD}, {"swapon", P_SWAPON}, {"swapoff", P_SWAPOFF},
    {"clock_settime", P_CLOCK_SETTIME}, {"settimeofday", P_SETTIMEOFDAY},
    {"personality", P_PERSONALITY}, {"personality_noaslr", P_PERSONALITY_NOASLR},
    {"ptrace", P_PTRACE}, {"sethostname", P_SETHOSTNAME}, {"setdomainname", P_SETDOMAINNAME},
    {"chroot", P_CHROOT}, {"acct", P_ACCT}, {"delete_module", P_DELETE_MODULE}, {"bpf", P_BPF},
    {"userfaultfd", P_USERFAULTFD}, {"io_uring_setup", P_IO_URING_SETUP}, {"clone3", P_CLONE3},
    {"open_by_handle_at", P_OPEN_BY_HANDLE_AT}, {"kcmp", P_KCMP},
    {"socket_inet", P_SOCKET_INET}, {"socket_vsock", P_SOCKET_VSOCK},
    {"socket_alg", P_SOCKET_ALG}, {"socket_netlink_route", P_SOCKET_NETLINK_ROUTE},
    {"socket_netlink_audit", P_SOCKET_NETLINK_AUDIT},
};

#define PROBE_MISSING_PATH "/proc/self/ctr-seccomp-probe-missing"
#define PROBE_NOT_REACHED INT_MIN

static long probe_one(int id) {
    char buf[4096];
    switch (id) {
    case P_GETPID: return syscall(SYS_getpid);
    case P_GETTID: return syscall(SYS_gettid);
    case P_GETCWD: return syscall(SYS_getcwd, buf, sizeof buf);
    case P_UNAME: return syscall(SYS_uname, buf); /* struct utsname is 390 bytes */
    case P_UNSHARE: return syscall(SYS_unshare, (long)CLONE_NEWUTS);
    case P_SETNS: return syscall(SYS_setns, -1L, 0L);
    case P_MOUNT:
        return syscall(SYS_mount, "none", PROBE_MISSING_PATH, "tmpfs", 0L, NULL);
    case P_UMOUNT2: return syscall(SYS_umount2, PROBE_MISSING_PATH, 0L);
    case P_KEYCTL: return syscall(SYS_keyctl, 0x7fffffffL, 0L, 0L, 0L, 0L);
    case P_ADD_KEY:
        /* No such key type: ENODEV. -2 is KEY_SPEC_PROCESS_KEYRING. */
        return syscall(SYS_add_key, "ctr_probe_no_such_type", "ctr-probe", "x", 1L, -2L);
    case P_REBOOT: return syscall(SYS_reboot, 0L, 0L, 0L, NULL); /* bad magic: EINVAL */
    case P_KEXEC_LOAD:
        /* An unknown architecture in the flags: EINVAL before anything else is looked at. */
        return syscall(SYS_kexec_load, 0L, 0L, NULL, (long)(0x7fffUL << 16));
    case P_SWAPON: return syscall(SYS_swapon, PROBE_MISSING_PATH, 0L);
    case P_SWAPOFF: return syscall(SYS_swapoff, PROBE_MISSING_PATH);
    case P_CLOCK_SETTIME: {
        /* CLOCK_MONOTONIC cannot be set: EINVAL; the clock is never changed. */
        struct timespec ts = {0, 0};
        return syscall(SYS_clock_settime, (long)CLOCK_MONOTONIC, &ts);
    }
    case P_SETTIMEOFDAY: return syscall(SYS_settimeofday, NULL, NULL); /* sets nothing */
    case P_PERSONALITY: return syscall(SYS_personality, 0xffffffffUL) == -1 ? -1 : 0;
    case P_PERSONALITY_NOASLR: return syscall(SYS_personality, 0x0040000UL) == -1 ? -1 : 0;
    case P_PTRACE: return syscall(SYS_ptrace, 2L /* PTRACE_PEEKDATA */, -1L, 0L, 0L);
    case P_SETHOSTNAME:
        memset(buf, 'x', 1000);
        return syscall(SYS_sethostname, buf, 1000L); /* longer than 64: EINVAL */
    case P_SETDOMAINNAME:
        memset(buf, 'x', 1000);
        return syscall(SYS_setdomainname, buf, 1000L);
    case P_CHROOT: return syscall(SYS_chroot, PROBE_MISSING_PATH);
    case P_ACCT: return syscall(SYS_acct, PROBE_MISSING_PATH);
    case P_DELETE_MODULE:
        return syscall(SYS_delete_module, "ctr_probe_no_such_module", (long)O_NONBLOCK);
    case P_BPF: return syscall(SYS_bpf, 0x7fffffffL, NULL, 0L);
    case P_USERFAULTFD: return syscall(SYS_userfaultfd, 0x7fffffffL);
    case P_IO_URING_SETUP: return syscall(SYS_io_uring_setup, 0L, NULL);
    case P_CLONE3: return syscall(SYS_clone3, NULL, 0L); /* size 0: EINVAL */
    case P_OPEN_BY_HANDLE_AT: return syscall(SYS_open_by_handle_at, -1L, NULL, 0L);
    case P_KCMP: {
        long pid = syscall(SYS_getpid);
        return syscall(SYS_kcmp, pid, pid, 0x7fffffffL, 0L, 0L);
    }
    case P_SOCKET_INET: return syscall(SYS_socket, (long)AF_INET, (long)SOCK_DGRAM, 0L);
    case P_SOCKET_VSOCK: return syscall(SYS_socket, 40L /* AF_VSOCK */, (long)SOCK_STREAM, 0L);
    case P_SOCKET_ALG: return syscall(SYS_socket, 38L /* AF_ALG */, (long)SOCK_SEQPACKET, 0L);
    case P_SOCKET_NETLINK_ROUTE:
        return syscall(SYS_socket, (long)AF_NETLINK, (long)SOCK_RAW, 0L /* NETLINK_ROUTE */);
    case P_SOCKET_NETLINK_AUDIT:
        return syscall(SYS_socket, (long)AF_NETLINK, (long)SOCK_RAW, 9L /* NETLINK_AUDIT */);
    default: errno = EINVAL; return -1;
    }
}

static int is_socket_probe(int id) {
    return id == P_SOCKET_INET || id == P_SOCKET_VSOCK || id == P_SOCKET_ALG ||
           id == P_SOCKET_NETLINK_ROUTE || id == P_SOCKET_NETLINK_AUDIT || id == P_USERFAULTFD ||
           id == P_IO_URING_SETUP;
}

/* Child side: async-signal-safe only (syscalls, no allocation). */
static void probe_child(const unsigned char *bpf, size_t len, const int *ids, int n, int *slots) {
    if (syscall(SYS_prctl, (long)PR_SET_NO_NEW_PRIVS, 1L, 0L, 0L, 0L) != 0) {
        int e = errno;
        for (int i = 0; i < n; i++) slots[i] = -1000 - e;
        syscall(SYS_exit_group, 0L);
    }
    if (bpf && len) {
        if (csys_seccomp_install(bpf, len) != 0) {
            int e = errno;
            for (int i = 0; i < n; i++) slots[i] = -1000 - e;
            syscall(SYS_exit_group, 0L);
        }
    }
    for (int i = 0; i < n; i++) {
        errno = 0;
        long r = probe_one(ids[i]);
        int e = r == -1 ? errno : 0;
        if (r >= 0 && is_socket_probe(ids[i])) syscall(SYS_close, r);
        slots[i] = e;
    }
    /* Leave even if a custom profile denies exit_group (or exit). */
    syscall(SYS_exit_group, 0L);
    syscall(SYS_exit, 0L);
    __builtin_trap();
}

int csys_seccomp_probe(const unsigned char *bpf, size_t len, const char *const *syscalls_to_try,
                       int n, int *errnos_out) {
    csys_load_seccomp(NULL);
    if (n < 0 || (n > 0 && (!syscalls_to_try || !errnos_out))) {
        errno = EINVAL;
        return -1;
    }
    if (n == 0) return 0;
    size_t bytes = (size_t)n * 2 * sizeof(int);
    int *shared = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED) return -1;
    int *ids = shared;
    int *slots = shared + n;
    for (int i = 0; i < n; i++) {
        ids[i] = 0;
        for (size_t k = 0; k < sizeof probe_names / sizeof probe_names[0]; k++) {
            if (syscalls_to_try[i] && strcmp(syscalls_to_try[i], probe_names[k].name) == 0) {
                ids[i] = probe_names[k].id;
                break;
            }
        }
        if (!ids[i]) {
            munmap(shared, bytes);
            errno = EINVAL;
            return -1;
        }
        slots[i] = PROBE_NOT_REACHED;
    }

    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        munmap(shared, bytes);
        errno = e;
        return -1;
    }
    if (pid == 0) probe_child(bpf, len, ids, n, slots);

    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            int e = errno;
            munmap(shared, bytes);
            errno = e;
            return -1;
        }
    }
    int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    for (int i = 0; i < n; i++) {
        int v = slots[i];
        if (v == PROBE_NOT_REACHED) v = sig ? -sig : -1;
        errnos_out[i] = v;
    }
    munmap(shared, bytes);
    return 0;
}

const char *csys_seccomp_library_version(void) {
    csys_load_seccomp(NULL);
    static char v[48];
    const struct scmp_version *sv = seccomp_version();
    snprintf(v, sizeof v, "%u.%u.%u", sv->major, sv->minor, sv->micro);
    return v;
}
