/*
 * ctr's exec stub: the program that executes a container's command (runc CVE-2019-5736).
 *
 * The container's first process (and every `ctr exec` process) is a clone of ctr until it
 * execs. If it exec'd the command directly, /proc/self/exe would name the host's ctr binary
 * at that moment, and an image whose command is `#!/proc/self/exe` would have the kernel run
 * ctr inside the container (with the image's ld.so and preloads), holding the host binary
 * open. So the last step of the child execs this stub instead, from a sealed memfd that ctr
 * fills for each container: from then on /proc/self/exe is that memfd (it cannot be written,
 * grown or shrunk), and the stub execs the command. The stub is static and freestanding (no
 * libc, no interpreter): nothing of the image is loaded before the command itself.
 *
 * Built by scripts/gen-exec-stub.sh into csys_exec_stub_blob.c (the bytes ctr embeds); a test
 * rebuilds it and compares. Not compiled into ctr itself (Package.swift excludes this file).
 *
 * argv: NAME "--ctr-stub=1" MODE SYNCFD PATH ARGV0 ARGS...
 *   MODE "exec": exec PATH with ARGV0 ARGS... and the stub's own environment.
 *   MODE "init": pid 1 of a container (--init): fork; the child execs as above, pid 1
 *                forwards signals to it, reaps every process and exits as the child did.
 *   MODE "pause": the keeper of a user's shared user namespace (csys_userns_keeper_start):
 *                no capabilities, waits until PATH is gone (checked every 5 s) or SIGTERM.
 *   MODE "rmtree": SYNCFD is a directory fd, PATH a user namespace fd (or -1), ARGV0… names
 *                in that directory: removes each tree, as itself, then what is left as root
 *                of that user namespace (files of subordinate ids): a finished --rm
 *                container's dirs, after ctr returned (csys_remove_detached).
 *   SYNCFD: ctr's sync socket (-1: none). It is made close-on-exec before the command's exec,
 *           so ctr sees it close when the command starts; an exec failure is written to it as
 *           a csys_error {errno, "exec", message, CSYS_ERR_EXEC} and the stub exits 127 (ENOENT) or 126.
 * Invoked any other way (the `#!/proc/self/exe` trick) it says so and exits 126.
 */

typedef unsigned long size_t;
typedef long ssize_t;

#define CSYS_STUB_MAGIC "--ctr-stub=1"

/* ---------------------------------------------------------------- syscalls */
#if defined(__x86_64__)
#define NR_write 1
#define NR_close 3
#define NR_rt_sigprocmask 14
#define NR_getpid 39
#define NR_clone 56
#define NR_execve 59
#define NR_exit 60
#define NR_wait4 61
#define NR_kill 62
#define NR_fcntl 72
#define NR_capset 126
#define NR_rt_sigtimedwait 128
#define NR_prctl 157
#define NR_exit_group 231
#define NR_newfstatat 262
#define NR_openat 257
#define NR_getdents64 217
#define NR_unlinkat 263
#define NR_fchmod 91
#define NR_fchmodat 268
#define NR_lseek 8
#define NR_setns 308
#define NR_setresuid 117
#define NR_setresgid 119
static long sc(long n, long a, long b, long c, long d, long e) {
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8) : "rcx", "r11", "memory");
    return ret;
}
__asm__(".text\n.global _start\n_start:\n\txor %rbp,%rbp\n\tmov %rsp,%rdi\n\tand $-16,%rsp\n\tcall stub_main\n\thlt\n");
#elif defined(__aarch64__)
#define NR_write 64
#define NR_close 57
#define NR_rt_sigprocmask 135
#define NR_getpid 172
#define NR_clone 220
#define NR_execve 221
#define NR_exit 93
#define NR_wait4 260
#define NR_kill 129
#define NR_fcntl 25
#define NR_capset 91
#define NR_rt_sigtimedwait 137
#define NR_prctl 167
#define NR_exit_group 94
#define NR_newfstatat 79
#define NR_openat 56
#define NR_getdents64 61
#define NR_unlinkat 35
#define NR_fchmod 52
#define NR_fchmodat 53
#define NR_lseek 62
#define NR_setns 268
#define NR_setresuid 147
#define NR_setresgid 149
static long sc(long n, long a, long b, long c, long d, long e) {
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    register long x4 __asm__("x4") = e;
    __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4) : "memory");
    return x0;
}
__asm__(".text\n.global _start\n_start:\n\tmov x29, #0\n\tmov x0, sp\n\tbl stub_main\n\tbrk #0\n");
#else
#error "the exec stub has no syscall layer for this architecture"
#endif

#define F_SETFD 2
#define FD_CLOEXEC 1
#define SIG_SETMASK 2
#define SIGKILL 9
#define SIGCHLD 17
#define SIGSTOP 19
#define WNOHANG 1
#define PR_SET_NAME 15
#define PR_SET_NO_NEW_PRIVS 38
#define SIGHUP 1
#define SIGINT 2
#define SIGTERM 15
#define AT_FDCWD -100
#define AT_REMOVEDIR 0x200
#define O_RDONLY 0
#define O_DIRECTORY 0200000
#define O_NOFOLLOW 0400000
#define O_CLOEXEC 02000000
#define EACCES 13
#define CLONE_NEWUSER 0x10000000
#define DT_DIR 4
#define EINTR 4
#define EAGAIN 11
#define ENOENT 2

/* gcc may call these for struct copies */
void *memset(void *d, int c, size_t n) {
    unsigned char *p = d;
    while (n--) *p++ = (unsigned char)c;
    return d;
}
void *memcpy(void *d, const void *s, size_t n) {
    unsigned char *p = d;
    const unsigned char *q = s;
    while (n--) *p++ = *q++;
    return d;
}

static size_t slen(const char *s) {
    size_t n = 0;
    while (s[n]) n++;
    return n;
}
static int seq(const char *a, const char *b) {
    while (*a && *a == *b) a++, b++;
    return *a == *b;
}
static __attribute__((noreturn)) void die(int code) {
    for (;;) sc(NR_exit_group, code, 0, 0, 0, 0);
}

/* the csys_error of csys.h: int err; char stage[64]; char message[1024]; int kind */
struct report {
    int err;
    char stage[64];
    char message[1024];
    int kind; /* CSYS_ERR_EXEC: the command could not be executed */
};

static const char *errtext(int e) {
    switch (e) {
    case 1: return "operation not permitted";
    case 2: return "no such file or directory";
    case 7: return "argument list too long";
    case 8: return "exec format error";
    case 12: return "cannot allocate memory";
    case 13: return "permission denied";
    case 20: return "not a directory";
    case 21: return "is a directory";
    case 26: return "text file busy";
    case 40: return "too many levels of symbolic links";
    default: return "cannot execute";
    }
}

static void append(char *buf, size_t *n, size_t cap, const char *s) {
    while (*s && *n + 1 < cap) buf[(*n)++] = *s++;
    buf[*n] = 0;
}

static __attribute__((noreturn)) void exec_or_report(int sync, const char *path, char **argv, char **envp) {
    if (sync >= 0) sc(NR_fcntl, sync, F_SETFD, FD_CLOEXEC, 0, 0);
    long r = sc(NR_execve, (long)path, (long)argv, (long)envp, 0, 0);
    int e = (int)-r;
    static struct report rep;
    rep.err = e;
    rep.kind = 1;
    size_t n = 0;
    append(rep.stage, &n, sizeof rep.stage, "exec");
    n = 0;
    append(rep.message, &n, sizeof rep.message, "exec: \"");
    append(rep.message, &n, sizeof rep.message, path);
    append(rep.message, &n, sizeof rep.message, "\": ");
    append(rep.message, &n, sizeof rep.message, errtext(e));
    if (sync >= 0) {
        long w;
        do w = sc(NR_write, sync, (long)&rep, sizeof rep, 0, 0);
        while (w == -EINTR);
    } else {
        append(rep.message, &n, sizeof rep.message, "\n");
        sc(NR_write, 2, (long)rep.message, (long)slen(rep.message), 0, 0);
    }
    die(e == ENOENT ? 127 : 126);
}

static int atoi_fd(const char *s) {
    if (seq(s, "-1")) return -1;
    int v = 0;
    if (!*s) return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return -1;
        v = v * 10 + (*s - '0');
    }
    return v;
}

static void drop_capabilities(void) {
    struct { unsigned version; int pid; } hdr = {0x20080522, 0};
    unsigned data[6] = {0, 0, 0, 0, 0, 0};
    sc(NR_capset, (long)&hdr, (long)data, 0, 0, 0);
    sc(NR_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
}

/* pid 1 with --init: forward signals to the command, reap every process, exit as it did.
 * All signals stay blocked and are taken with sigtimedwait: no handlers. */
static __attribute__((noreturn)) void init_loop(long child, int sync, char **argv) {
    if (sync >= 0) sc(NR_close, sync, 0, 0, 0, 0);
    /* `ps` in the container shows "ctr-init", not the command's arguments twice */
    sc(NR_prctl, PR_SET_NAME, (long)"ctr-init", 0, 0, 0);
    if (argv[1]) {
        char *end = argv[1];
        for (char **a = argv + 1; *a; a++) end = *a + slen(*a);
        memset(argv[1], 0, (size_t)(end - argv[1]));
    }
    /* nothing of the command's capabilities is needed to forward and reap */
    drop_capabilities();
    unsigned long all = ~0UL;
    for (;;) {
        struct { int signo, errno_, code, pad[29]; } info;
        long s = sc(NR_rt_sigtimedwait, (long)&all, (long)&info, 0, 8, 0);
        if (s < 0) continue;
        if (s != SIGCHLD) {
            sc(NR_kill, child, s, 0, 0, 0);
            continue;
        }
        for (;;) {
            int status = 0;
            long r = sc(NR_wait4, -1, (long)&status, WNOHANG, 0, 0);
            if (r == -EINTR) continue;
            if (r <= 0) break;
            if (r == child) {
                int sig = status & 0x7f;
                die(sig == 0 ? (status >> 8) & 0xff : 128 + sig);
            }
        }
    }
}

/* The keeper of a shared user namespace: holds it while `path` (its state file) exists. */
static __attribute__((noreturn)) void pause_loop(const char *path) {
    drop_capabilities();
    unsigned long all = ~0UL;
    sc(NR_rt_sigprocmask, SIG_SETMASK, (long)&all, 0, 8, 0);
    for (;;) {
        struct { long sec, nsec; } every = {5, 0};
        struct { int signo, errno_, code, pad[29]; } info;
        long s = sc(NR_rt_sigtimedwait, (long)&all, (long)&info, (long)&every, 8, 0);
        if (s == SIGTERM || s == SIGINT || s == SIGHUP) die(0);
        if (s == -EAGAIN) {
            static unsigned char st[256];
            if (sc(NR_newfstatat, AT_FDCWD, (long)path, (long)st, 0, 0) < 0) die(0);
        }
    }
}

/* Remove `name` (an entry of dirfd) and everything under it; 0, or -1 when something stayed. */
static int rm_tree(int dirfd, const char *name, int depth) {
    long r = sc(NR_unlinkat, dirfd, (long)name, 0, 0, 0);
    if (r == 0 || r == -ENOENT) return 0;
    if (r == -EACCES) {
        sc(NR_fchmod, dirfd, 0700, 0, 0, 0);
        r = sc(NR_unlinkat, dirfd, (long)name, 0, 0, 0);
        if (r == 0) return 0;
    }
    if (depth > 512) return -1;
    long fd = sc(NR_openat, dirfd, (long)name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0, 0);
    if (fd == -EACCES) {
        sc(NR_fchmodat, dirfd, (long)name, 0700, 0, 0);
        fd = sc(NR_openat, dirfd, (long)name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0, 0);
    }
    if (fd == -ENOENT) return 0;
    if (fd < 0) return -1;
    int failed = 0;
    char buf[2048];
    for (int pass = 0; pass < 64; pass++) {
        int removed = 0, seen = 0;
        sc(NR_lseek, fd, 0, 0, 0, 0);
        for (;;) {
            long n = sc(NR_getdents64, fd, (long)buf, sizeof buf, 0, 0);
            if (n <= 0) break;
            for (long off = 0; off < n;) {
                /* struct linux_dirent64 { u64 ino; s64 off; u16 reclen; u8 type; char name[]; } */
                unsigned short reclen = *(unsigned short *)(buf + off + 16);
                unsigned char type = *(unsigned char *)(buf + off + 18);
                const char *nm = buf + off + 19;
                off += reclen;
                if (nm[0] == '.' && (nm[1] == 0 || (nm[1] == '.' && nm[2] == 0))) continue;
                seen++;
                long u = type == DT_DIR ? -21 /* EISDIR */ : sc(NR_unlinkat, fd, (long)nm, 0, 0, 0);
                if (u == -EACCES) {
                    sc(NR_fchmod, fd, 0700, 0, 0, 0);
                    u = sc(NR_unlinkat, fd, (long)nm, 0, 0, 0);
                }
                if (u != 0 && u != -ENOENT) u = rm_tree((int)fd, nm, depth + 1);
                if (u == 0 || u == -ENOENT) removed++;
            }
        }
        if (seen == 0) break;
        if (removed == 0) { failed = 1; break; }
    }
    sc(NR_close, fd, 0, 0, 0, 0);
    r = sc(NR_unlinkat, dirfd, (long)name, AT_REMOVEDIR, 0, 0);
    return r == 0 || r == -ENOENT ? (failed ? -1 : 0) : -1;
}

static __attribute__((noreturn)) void rmtree_mode(int dirfd, int userns, char **names) {
    int left = 0;
    for (char **n = names; *n; n++) left |= rm_tree(dirfd, *n, 0) != 0;
    if (left && userns >= 0 && sc(NR_setns, userns, CLONE_NEWUSER, 0, 0, 0) == 0 &&
        sc(NR_setresgid, 0, 0, 0, 0, 0) == 0 && sc(NR_setresuid, 0, 0, 0, 0, 0) == 0) {
        for (char **n = names; *n; n++) rm_tree(dirfd, *n, 0);
    }
    die(0);
}

__attribute__((used, noreturn)) void stub_main(long *sp) {
    int argc = (int)sp[0];
    char **argv = (char **)(sp + 1);
    char **envp = argv + argc + 1;
    if (argc < 6 || !seq(argv[1], CSYS_STUB_MAGIC)) {
        static const char msg[] = "ctr-exec: this program only starts container processes for ctr\n";
        sc(NR_write, 2, (long)msg, sizeof msg - 1, 0, 0);
        die(126);
    }
    const char *mode = argv[2];
    int sync = atoi_fd(argv[3]);
    const char *path = argv[4];
    char **cmd = argv + 5;
    if (seq(mode, "pause")) pause_loop(path);
    if (seq(mode, "rmtree")) rmtree_mode(sync, atoi_fd(path), cmd);
    if (seq(mode, "init")) {
        unsigned long all = ~0UL, none = 0;
        sc(NR_rt_sigprocmask, SIG_SETMASK, (long)&all, 0, 8, 0);
        long child = sc(NR_clone, SIGCHLD, 0, 0, 0, 0);
        if (child == 0) {
            sc(NR_rt_sigprocmask, SIG_SETMASK, (long)&none, 0, 8, 0);
            exec_or_report(sync, path, cmd, envp);
        }
        if (child < 0) {
            static const char msg[] = "ctr-init: cannot fork\n";
            sc(NR_write, 2, (long)msg, sizeof msg - 1, 0, 0);
            die(125);
        }
        init_loop(child, sync, argv);
    }
    exec_or_report(sync, path, cmd, envp);
}
