/* Around the container: exec into it, terminals, signal forwarding, the monitor of detached
 * containers, spawning small helpers. */
#include "include/csys_container.h"
#include "csys_internal.h"

#include <errno.h>
#include <grp.h>
#include <sys/uio.h>
#include <sys/socket.h>
#include <sys/xattr.h>
#include <linux/openat2.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* ---------------------------------------------------------------- exec */

#define XFAIL_KIND(kind_, stage, ...)                             \
    do {                                                          \
        int e_ = errno;                                           \
        csys_error err_;                                          \
        memset(&err_, 0, sizeof err_);                            \
        csys_set_error(&err_, e_, stage, __VA_ARGS__);            \
        err_.kind = kind_;                                        \
        if (p->sync_fd >= 0) (void)!write(p->sync_fd, &err_, sizeof err_); \
        _exit(125);                                               \
    } while (0)
#define XFAIL(stage, ...) XFAIL_KIND(CSYS_ERR_SYSTEM, stage, __VA_ARGS__)
/* the command could not be executed: 126 or 127 for the caller, as docker */
#define XFAIL_EXEC(...) XFAIL_KIND(CSYS_ERR_EXEC, "exec", __VA_ARGS__)

static void exec_inner(const csys_exec_plan *p) {
    int tmp[3];
    for (int i = 0; i < 3; i++) tmp[i] = p->stdio[i] >= 0 ? fcntl(p->stdio[i], F_DUPFD_CLOEXEC, 10) : -1;
    for (int i = 0; i < 3; i++)
        if (tmp[i] >= 0 && dup2(tmp[i], i) < 0) XFAIL("stdio", "dup2: %s", strerror(errno));
    /* a session of its own, with the terminal only under -t: a process that shared ctr's
     * controlling terminal could push input into the host's shell (TIOCSTI), as runc avoids */
    setsid();
    if (p->tty) ioctl(0, TIOCSCTTY, 0);
    if (p->cwd && chdir(p->cwd) < 0) XFAIL("cwd", "cannot enter %s: %s", p->cwd, strerror(errno));
    if (!p->no_new_privs && p->seccomp) {
        struct sock_fprog prog = {(unsigned short)(p->seccomp_len / sizeof(struct sock_filter)), (struct sock_filter *)p->seccomp};
        if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) < 0) XFAIL("seccomp", "%s", strerror(errno));
    }
    for (int c = 0; c <= p->cap_last; c++)
        if (!(p->caps & (1ULL << c))) prctl(PR_CAPBSET_DROP, c, 0, 0, 0);
    if (p->setgroups && setgroups((size_t)p->ngroups, p->groups) < 0) XFAIL("user", "setgroups: %s", strerror(errno));
    if (setresgid(p->gid, p->gid, p->gid) < 0) XFAIL("user", "cannot switch to gid %u: %s", p->gid, strerror(errno));
    if (setresuid(p->uid, p->uid, p->uid) < 0) XFAIL("user", "cannot switch to uid %u: %s", p->uid, strerror(errno));
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    if (p->uid == 0) {
        /* no inheritable set (CVE-2022-24769): an exec'd file gains nothing it does not carry */
        data[0].effective = data[0].permitted = (uint32_t)p->caps;
        data[1].effective = data[1].permitted = (uint32_t)(p->caps >> 32);
    }
    if (syscall(SYS_capset, &hdr, data) < 0) XFAIL("capabilities", "capset: %s", strerror(errno));
    if (p->no_new_privs) {
        prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        if (p->seccomp) {
            struct sock_fprog prog = {(unsigned short)(p->seccomp_len / sizeof(struct sock_filter)), (struct sock_filter *)p->seccomp};
            if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) < 0) XFAIL("seccomp", "%s", strerror(errno));
        }
    }
    csys_signals_reset_child();
    csys_cloexec_from(3);
    /* through the exec stub, PATH searched as the user (see csys_exec_via_stub) */
    const char *cmd = p->argv[0];
    char path[CSYS_MAX_PATH];
    int r = csys_resolve_command(cmd, p->path_env, path, sizeof path);
    if (r < 0) {
        errno = -r;
        if (strchr(cmd, '/')) XFAIL_EXEC("exec: \"%s\": %s", cmd, errno == ENOENT ? "no such file or directory" : strerror(errno));
        XFAIL_EXEC("exec: \"%s\": %s", cmd, r == -EACCES ? "permission denied" : "executable file not found in $PATH");
    }
    csys_exec_via_stub(p->stub_fd, p->sync_fd, 0, path, p->argv, p->envp);
    XFAIL_EXEC("cannot start ctr's exec stub: %s", strerror(errno));
}

pid_t csys_container_exec(const csys_exec_plan *p, csys_error *err) {
    pid_t helper = fork();
    if (helper < 0) {
        csys_set_error(err, errno, "fork", "fork: %s", strerror(errno));
        return -1;
    }
    if (helper > 0) return helper;
    /* the helper: single-threaded, so it may join a user namespace */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    static const int order[7] = {CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWCGROUP, CLONE_NEWPID};
    static const char *names[7] = {"user", "mount", "uts", "ipc", "network", "cgroup", "pid"};
    for (int i = 0; i < 7; i++) {
        if (p->ns_fds[i] < 0) continue;
        if (setns(p->ns_fds[i], order[i]) < 0) XFAIL("setns", "cannot join the container's %s namespace: %s", names[i], strerror(errno));
    }
    if (p->ns_fds[0] >= 0 && (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0))
        XFAIL("userns", "cannot become root in the container's user namespace: %s", strerror(errno));
    if (fchdir(p->root_fd) < 0 || chroot(".") < 0 || chdir("/") < 0)
        XFAIL("chroot", "cannot enter the container's root: %s", strerror(errno));
    prctl(PR_SET_DUMPABLE, 0);
    pid_t inner = fork(); /* the pid namespace applies to children */
    if (inner < 0) XFAIL("fork", "fork: %s", strerror(errno));
    if (inner == 0) exec_inner(p);
    /* tell the caller the process's pid (for signals), then wait for it */
    int32_t v = inner;
    csys_error e;
    memset(&e, 0, sizeof e);
    snprintf(e.stage, sizeof e.stage, "pid");
    e.err = v;
    (void)!write(p->sync_fd, &e, sizeof e);
    close(p->sync_fd);
    for (int i = 0; i < 3; i++)
        if (p->stdio[i] > 2) close(p->stdio[i]);
    int code = csys_wait_exit(inner);
    _exit(code < 0 ? 1 : code);
}

static ssize_t read_report(int fd, csys_error *e) {
    ssize_t n;
    do n = read(fd, e, sizeof *e);
    while (n < 0 && errno == EINTR);
    return n;
}

pid_t csys_exec_started(int sync, pid_t helper, csys_error *err) {
    csys_error e;
    if (read_report(sync, &e) != (ssize_t)sizeof e) return helper;
    if (strcmp(e.stage, "pid") != 0) {
        *err = e;
        return -1;
    }
    pid_t inner = (pid_t)e.err;
    /* then EOF (exec) or an error from the process */
    if (read_report(sync, &e) == (ssize_t)sizeof e) {
        *err = e;
        return -1;
    }
    return inner;
}

/* ---------------------------------------------------------------- terminals */

int csys_openpty(int *master, int *slave, int from, csys_error *err) {
    int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (m < 0 || grantpt(m) < 0 || unlockpt(m) < 0) {
        csys_set_error(err, errno, "tty", "cannot open a pseudo-terminal: %s", strerror(errno));
        if (m >= 0) close(m);
        return -1;
    }
    char name[128];
    if (ptsname_r(m, name, sizeof name) != 0) {
        csys_set_error(err, errno, "tty", "ptsname: %s", strerror(errno));
        close(m);
        return -1;
    }
    int s = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (s < 0) {
        csys_set_error(err, errno, "tty", "cannot open %s: %s", name, strerror(errno));
        close(m);
        return -1;
    }
    if (from >= 0) csys_tty_copy_size(from, m);
    *master = m;
    *slave = s;
    return 0;
}

static struct termios saved_tio;
static int saved_tio_fd = -1;

int csys_tty_raw(int fd) {
    struct termios t;
    if (tcgetattr(fd, &t) < 0) return -1;
    saved_tio = t;
    saved_tio_fd = fd;
    cfmakeraw(&t);
    return tcsetattr(fd, TCSANOW, &t);
}

void csys_tty_restore(int fd) {
    if (saved_tio_fd == fd) {
        tcsetattr(fd, TCSANOW, &saved_tio);
        saved_tio_fd = -1;
    }
}

void csys_tty_copy_size(int from, int to) {
    struct winsize ws;
    if (ioctl(from, TIOCGWINSZ, &ws) == 0) ioctl(to, TIOCSWINSZ, &ws);
}

int csys_tty_relay(int master, int in, int out) {
    char buf[65536];
    int in_open = in >= 0;
    for (;;) {
        struct pollfd fds[2] = {{master, POLLIN, 0}, {in, POLLIN, 0}};
        int n = poll(fds, in_open ? 2 : 1, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t r = read(master, buf, sizeof buf);
            if (r <= 0) {
                if (r < 0 && errno == EINTR) continue;
                return 0; /* EIO: the other side is closed */
            }
            if (csys_write_all(out, buf, (size_t)r) < 0) return -1;
        }
        if (in_open && (fds[1].revents & (POLLIN | POLLHUP | POLLERR))) {
            ssize_t r = read(in, buf, sizeof buf);
            if (r <= 0) {
                if (r < 0 && errno == EINTR) continue;
                in_open = 0; /* EOF on our input: send EOF (^D) to the terminal */
                char eot = 4;
                (void)!write(master, &eot, 1);
                continue;
            }
            if (csys_write_all(master, buf, (size_t)r) < 0) return -1;
        }
    }
}

/* ---------------------------------------------------------------- signals */

static volatile pid_t forward_pid = 0;
static volatile int forward_tty = -1;
static volatile int stop_cooperative = 0;
static volatile sig_atomic_t stop_signal = 0;

void csys_catch_stop_signals(int on) { stop_cooperative = on; }
int csys_stop_signal(void) { return stop_signal; }

static void *signal_thread(void *arg) {
    (void)arg;
    sigset_t set;
    sigemptyset(&set);
    int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) sigaddset(&set, sigs[i]);
    for (;;) {
        int sig;
        if (sigwait(&set, &sig) != 0) continue;
        pid_t pid = forward_pid;
        if (sig == SIGWINCH) {
            if (forward_tty >= 0) csys_tty_copy_size(0, forward_tty);
            if (pid > 0) kill(pid, SIGWINCH);
            continue;
        }
        if (pid > 0) {
            kill(pid, sig);
            continue;
        }
        /* a command that removes its partial writes: the first stop signal only asks it to */
        if (stop_cooperative && !stop_signal && (sig == SIGINT || sig == SIGTERM || sig == SIGHUP)) {
            stop_signal = sig;
            continue;
        }
        /* nothing to forward to: what the signal would have done */
        if (saved_tio_fd >= 0) csys_tty_restore(saved_tio_fd);
        if (sig == SIGUSR1 || sig == SIGUSR2) continue;
        signal(sig, SIG_DFL);
        sigset_t one;
        sigemptyset(&one);
        sigaddset(&one, sig);
        pthread_sigmask(SIG_UNBLOCK, &one, NULL);
        raise(sig);
        _exit(128 + sig);
    }
    return NULL;
}

void csys_signals_init(void) {
    sigset_t set;
    sigemptyset(&set);
    int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) sigaddset(&set, sigs[i]);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    pthread_create(&t, &attr, signal_thread, NULL);
    pthread_attr_destroy(&attr);
}

void csys_signals_forward_to(pid_t pid, int tty_master) {
    forward_tty = tty_master;
    forward_pid = pid;
}

/* ---------------------------------------------------------------- helpers */

int csys_spawn(const char *path, char *const argv[], char *const envp[], const int *fds, int nfds, int flags,
               const char *dir, pid_t *pid) {
    if (nfds < 0 || nfds > CSYS_SPAWN_MAX_FDS) return EINVAL;
    /* the fds to hand over, first copied to nfds or above: no dup2 onto 0..nfds-1 can then
     * overwrite a source still to be copied (the copies close on exec) */
    int high[CSYS_SPAWN_MAX_FDS];
    int rc = 0, n = 0;
    for (; n < nfds; n++) {
        high[n] = -1;
        if (fds[n] < 0) continue;
        high[n] = fcntl(fds[n], F_DUPFD_CLOEXEC, nfds);
        if (high[n] < 0) { rc = errno; break; }
    }
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    if (rc == 0) {
        for (int i = 0; i < nfds && rc == 0; i++) {
            rc = high[i] >= 0 ? posix_spawn_file_actions_adddup2(&fa, high[i], i)
                              : posix_spawn_file_actions_addopen(&fa, i, "/dev/null", i == 0 ? O_RDONLY : O_WRONLY, 0);
        }
        /* and nothing else: not another thread's pipe, not a container's sync socket */
        if (rc == 0) rc = posix_spawn_file_actions_addclosefrom_np(&fa, nfds);
        if (rc == 0 && dir) rc = posix_spawn_file_actions_addchdir_np(&fa, dir);
    }
    if (rc == 0) {
        sigset_t none, all;
        sigemptyset(&none);
        /* every signal, glibc's own two (32, 33) too: sigfillset leaves them out, and posix_spawn
         * then leaves them ignored (SIG_IGN survives exec) */
        memset(&all, 0xff, sizeof all);
        posix_spawnattr_setsigmask(&attr, &none);
        posix_spawnattr_setsigdefault(&attr, &all);
        short f = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
        if (flags & CSYS_SPAWN_SESSION) f |= POSIX_SPAWN_SETSID;
        else if (flags & CSYS_SPAWN_PGROUP) { f |= POSIX_SPAWN_SETPGROUP; posix_spawnattr_setpgroup(&attr, 0); }
        posix_spawnattr_setflags(&attr, f);
        rc = posix_spawn(pid, path, &fa, &attr, argv, envp ? envp : environ);
    }
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    for (int i = 0; i < n && i < nfds; i++) if (high[i] >= 0) close(high[i]);
    return rc;
}

/* ---------------------------------------------------------------- monitor */

static void log_line(int logfd, const char *stream, const char *data, size_t len, int partial) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char head[96];
    int h = (int)strftime(head, sizeof head, "%Y-%m-%dT%H:%M:%S", &tm);
    h += snprintf(head + h, sizeof head - (size_t)h, ".%09ldZ %s %c ", ts.tv_nsec, stream, partial ? 'P' : 'F');
    struct iovec v[3] = {{head, (size_t)h}, {(void *)data, len}, {"\n", 1}};
    (void)!writev(logfd, v, 3);
}

/* split what arrived into lines; a line longer than the buffer goes out as partial records */
typedef struct lbuf { char data[16384]; size_t len; } lbuf;

static void feed(int logfd, const char *stream, lbuf *b, const char *in, size_t n) {
    while (n) {
        size_t room = sizeof b->data - b->len;
        size_t k = n < room ? n : room;
        memcpy(b->data + b->len, in, k);
        b->len += k;
        in += k;
        n -= k;
        size_t start = 0;
        for (size_t i = 0; i < b->len; i++) {
            if (b->data[i] == '\n') {
                size_t end = i;
                if (end > start && b->data[end - 1] == '\r') end--;
                log_line(logfd, stream, b->data + start, end - start, 0);
                start = i + 1;
            }
        }
        memmove(b->data, b->data + start, b->len - start);
        b->len -= start;
        if (b->len == sizeof b->data) {
            log_line(logfd, stream, b->data, b->len, 1);
            b->len = 0;
        }
    }
}

pid_t csys_monitor_start(const csys_container_plan *p, const csys_monitor_args *m, csys_error *err) {
    pid_t mon = fork();
    if (mon < 0) {
        csys_set_error(err, errno, "fork", "cannot start the monitor: %s", strerror(errno));
        return -1;
    }
    if (mon > 0) return mon;

    /* the monitor: its own session, no terminal, signals as usual */
    setsid();
    csys_signals_reset_child();
    signal(SIGPIPE, SIG_IGN);
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
        dup2(null, 0);
        if (m->report_fd != 1) dup2(null, 1);
        if (m->report_fd != 2) dup2(null, 2);
    }
    csys_error e;
    memset(&e, 0, sizeof e);
    pid_t c = csys_container_clone(p, &e);
    int32_t v = c > 0 ? c : -1;
    (void)!write(m->report_fd, &v, sizeof v);
    if (c < 0) {
        (void)!write(m->report_fd, &e, sizeof e);
        _exit(125);
    }
    close(m->report_fd);
    /* keep only what the monitor itself reads */
    close(p->sync_fd);
    for (int i = 0; i < 3; i++)
        if (p->stdio[i] > 2 && p->stdio[i] != m->out_fd && p->stdio[i] != m->err_fd && p->stdio[i] != m->tty_master)
            close(p->stdio[i]);
    int logfd = open(m->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    /* nothing else of ctr's (or of whoever started ctr: a caller's pipe held open here would
     * make `ctr run -d | ...` wait for the container's end) stays open in the monitor */
    {
        int keep[4] = {logfd, m->tty_master, m->out_fd, m->err_fd};
        csys_close_fds_except(keep, 4);
    }
    lbuf ob, eb;
    ob.len = eb.len = 0;
    int fds[2] = {m->tty_master >= 0 ? m->tty_master : m->out_fd, m->tty_master >= 0 ? -1 : m->err_fd};
    for (;;) {
        struct pollfd pf[2];
        int n = 0;
        for (int i = 0; i < 2; i++)
            if (fds[i] >= 0) { pf[n].fd = fds[i]; pf[n].events = POLLIN; pf[n].revents = 0; n++; }
        if (n == 0) break;
        int r = poll(pf, (nfds_t)n, -1);
        if (r < 0) {
            if (errno == EINTR) continue;
            break;
        }
        for (int i = 0; i < n; i++) {
            if (!(pf[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            char buf[16384];
            ssize_t k = read(pf[i].fd, buf, sizeof buf);
            int which = pf[i].fd == fds[0] ? 0 : 1;
            if (k <= 0) {
                if (k < 0 && errno == EINTR) continue;
                lbuf *b = which == 0 ? &ob : &eb;
                if (b->len && logfd >= 0) { log_line(logfd, which == 0 ? "stdout" : "stderr", b->data, b->len, 1); b->len = 0; }
                close(fds[which]);
                fds[which] = -1;
                continue;
            }
            if (logfd >= 0) feed(logfd, which == 0 ? "stdout" : "stderr", which == 0 ? &ob : &eb, buf, (size_t)k);
        }
    }
    int code = csys_wait_exit(c);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char line[64];
    int len = snprintf(line, sizeof line, "%d %lld%09ld\n", code, (long long)ts.tv_sec, ts.tv_nsec);
    char tmp[CSYS_MAX_PATH];
    snprintf(tmp, sizeof tmp, "%s.tmp", m->exit_path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0) {
        (void)!write(fd, line, (size_t)len);
        fsync(fd);
        close(fd);
        rename(tmp, m->exit_path);
    }
    if (logfd >= 0) close(logfd);
    if (m->on_exit_argv) {
        csys_cloexec_from(3);
        execvp(m->on_exit_argv[0], (char *const *)m->on_exit_argv);
    }
    _exit(0);
}

/* ---------------------------------------------------------------- fd server */

/* Runs as root of the build's user namespace: opens host paths the parent may not (files of
 * subordinate ids with modes that shut others out) and passes the fds back. A path with a
 * symlink in it is refused (RESOLVE_NO_SYMLINKS): the parent walks layer dirs component by
 * component and never asks through a link; a final symlink comes back as an O_PATH fd. */
int csys_job_fd_server(void *arg) {
    csys_fd_server *s = arg;
    for (;;) {
        struct { int32_t flags; char path[CSYS_MAX_PATH]; } req;
        ssize_t n = recv(s->sock, &req, sizeof req, 0);
        if (n <= 0) return 0; /* the parent is done */
        if ((size_t)n < sizeof(int32_t) + 1) return 1;
        ((char *)&req)[n < (ssize_t)sizeof req ? n : (ssize_t)sizeof req - 1] = 0;
        struct open_how how;
        memset(&how, 0, sizeof how);
        how.flags = (uint64_t)(req.flags | O_CLOEXEC | O_NOFOLLOW);
        how.resolve = RESOLVE_NO_SYMLINKS;
        int fd = (int)syscall(SYS_openat2, AT_FDCWD, req.path, &how, sizeof how);
        int32_t result = fd < 0 ? errno : 0;
        ssize_t w = csys_send_with_fds(s->sock, &result, sizeof result, &fd, fd >= 0 ? 1 : 0, MSG_NOSIGNAL);
        if (fd >= 0) close(fd);
        if (w < 0) return 0;
    }
}

int csys_fd_request(int sock, const char *path, int flags) {
    struct { int32_t flags; char path[CSYS_MAX_PATH]; } req;
    memset(&req, 0, sizeof req);
    req.flags = flags;
    size_t len = strlen(path);
    if (len >= sizeof req.path) { errno = ENAMETOOLONG; return -1; }
    memcpy(req.path, path, len + 1);
    if (send(sock, &req, sizeof(int32_t) + len + 1, MSG_NOSIGNAL) < 0) return -1;
    int32_t result = 0;
    int fd = -1, nfd = 0;
    ssize_t n = csys_recv_with_fds(sock, &result, sizeof result, &fd, 1, &nfd);
    if (n <= 0) { errno = EPIPE; return -1; }
    if (result != 0) {
        if (nfd) close(fd);
        errno = result;
        return -1;
    }
    if (!nfd) { errno = EPROTO; return -1; }
    return fd;
}

int csys_fd_readlink(int fd, char *buf, size_t len) {
    ssize_t n = readlinkat(fd, "", buf, len - 1);
    if (n < 0) return -1;
    buf[n] = 0;
    return (int)n;
}

long csys_fgetxattr(int fd, const char *name, void *value, size_t size) {
    return (long)fgetxattr(fd, name, value, size);
}

/* ---------------------------------------------------------------- stdio relays */

#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#ifndef PIPEFS_MAGIC
#define PIPEFS_MAGIC 0x50495045
#endif

int csys_stdio_passable(int fd) {
    struct stat st;
    if (fstat(fd, &st) < 0) return 0;
    if (S_ISCHR(st.st_mode) && major(st.st_rdev) == 1 && minor(st.st_rdev) == 3) return 1; /* /dev/null */
    if (isatty(fd)) return 1;
    if (S_ISFIFO(st.st_mode)) {
        /* an anonymous pipe; a named FIFO is a file of the host's (its mode can be changed) */
        struct statfs sf;
        return fstatfs(fd, &sf) == 0 && sf.f_type == PIPEFS_MAGIC;
    }
    return 0;
}

struct csys_relay {
    pthread_t thread;
    int from, to, close_from, close_to;
    int cancel[2];
};

static void *relay_main(void *arg) {
    csys_relay *r = arg;
    /* a reader that went away is an EPIPE here, not a SIGPIPE for ctr */
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, NULL);
    char buf[65536];
    int draining = 0, use_splice = 1;
    for (;;) {
        if (!draining) {
            struct pollfd p[2] = {{r->from, POLLIN, 0}, {r->cancel[0], POLLIN, 0}};
            int n = poll(p, 2, -1);
            if (n < 0) {
                if (errno == EINTR) continue;
                break;
            }
            if (p[1].revents) {
                char c = 's';
                (void)!read(r->cancel[0], &c, 1);
                if (c != 'd') break;
                /* what is in the pipe now, then stop (a process left running may hold it) */
                draining = 1;
                fcntl(r->from, F_SETFL, fcntl(r->from, F_GETFL) | O_NONBLOCK);
                continue;
            }
            if (!p[0].revents) continue;
        }
        if (use_splice) {
            /* one end is our pipe: the kernel moves the pages, no copy through here */
            ssize_t moved = splice(r->from, NULL, r->to, NULL, 1 << 20, SPLICE_F_MOVE | (draining ? SPLICE_F_NONBLOCK : 0));
            if (moved > 0) continue;
            if (moved == 0) break;
            if (errno == EINTR) continue;
            if (errno == EAGAIN) {
                if (draining) break;
                /* the destination is full (a non-blocking fd of the caller's): wait for it */
                struct pollfd o = {r->to, POLLOUT, 0};
                poll(&o, 1, 100);
                continue;
            }
            if (errno != EINVAL && errno != ENOSYS) break;
            use_splice = 0; /* an fd splice does not take (O_APPEND files before 6.x, ttys): copy */
        }
        ssize_t got = read(r->from, buf, sizeof buf);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0 && errno == EAGAIN && !draining) continue;
        if (got <= 0) break;
        ssize_t off = 0;
        while (off < got) {
            ssize_t w = write(r->to, buf + off, (size_t)(got - off));
            if (w < 0 && errno == EINTR) continue;
            if (w < 0 && errno == EAGAIN) {
                struct pollfd o = {r->to, POLLOUT, 0};
                poll(&o, 1, 100);
                continue;
            }
            if (w <= 0) goto done;
            off += w;
        }
    }
done:
    /* closing the container's end tells it: EOF on its stdin, EPIPE on its output */
    if (r->close_from) { close(r->from); r->from = -1; }
    if (r->close_to) { close(r->to); r->to = -1; }
    return NULL;
}

csys_relay *csys_relay_start(int from, int to, int close_from, int close_to, csys_error *err) {
    csys_relay *r = calloc(1, sizeof *r);
    if (!r) {
        csys_set_error(err, ENOMEM, "relay", "out of memory");
        return NULL;
    }
    r->from = from;
    r->to = to;
    r->close_from = close_from;
    r->close_to = close_to;
    if (pipe2(r->cancel, O_CLOEXEC) < 0) {
        csys_set_error(err, errno, "relay", "cannot make a pipe: %s", strerror(errno));
        free(r);
        return NULL;
    }
    int e = pthread_create(&r->thread, NULL, relay_main, r);
    if (e != 0) {
        csys_set_error(err, e, "relay", "cannot start a thread: %s", strerror(e));
        close(r->cancel[0]);
        close(r->cancel[1]);
        free(r);
        return NULL;
    }
    return r;
}

void csys_relay_finish(csys_relay *r, int drain) {
    if (!r) return;
    (void)!write(r->cancel[1], drain ? "d" : "s", 1);
    pthread_join(r->thread, NULL);
    if (r->close_from && r->from >= 0) close(r->from);
    if (r->close_to && r->to >= 0) close(r->to);
    close(r->cancel[0]);
    close(r->cancel[1]);
    free(r);
}
