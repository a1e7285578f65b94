/*
 * Running a C job as root inside a new user namespace.
 *
 * The caller (a multi-threaded Swift process) cannot unshare(CLONE_NEWUSER) itself, so it
 * forks; glibc's fork() makes malloc usable in the single-threaded child. The child
 * unshares, tells the parent, and waits while the parent writes its id maps (newuidmap and
 * newgidmap for subordinate ranges, or a single mapping). From there on only C runs.
 */
#include "csys_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <linux/close_range.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int read_byte(int fd) {
    char c;
    for (;;) {
        ssize_t n = read(fd, &c, 1);
        if (n == 1) return 0;
        if (n < 0 && errno == EINTR) continue;
        return -1;
    }
}

static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* close_range (5.9), else one close per possible fd */
static void close_between(unsigned int first, unsigned int last) {
    if (syscall(SYS_close_range, first, last, 0U) == 0) return;
    struct rlimit rl;
    unsigned int max = 65536;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < max) max = (unsigned int)rl.rlim_cur;
    for (unsigned int fd = first; fd <= last && fd < max; fd++) close((int)fd);
}

void csys_close_fds_except(const int *keep, int nkeep) {
    int sorted[64];
    int n = 0;
    for (int i = 0; i < nkeep && n < 64; i++)
        if (keep[i] >= 3) sorted[n++] = keep[i];
    qsort(sorted, (size_t)n, sizeof sorted[0], cmp_int);
    unsigned int from = 3;
    for (int i = 0; i < n; i++) {
        if ((unsigned int)sorted[i] > from) close_between(from, (unsigned int)sorted[i] - 1);
        from = (unsigned int)sorted[i] + 1;
    }
    close_between(from, ~0U);
}

int csys_userns_fork(csys_job_fn fn, void *arg, const int *keep, int nkeep, csys_error *err_out,
                     csys_userns_child *child, csys_error *err) {
    int ready[2], release[2];
    if (pipe2(ready, O_CLOEXEC) < 0) {
        csys_set_error(err, errno, "pipe", "pipe: %s", strerror(errno));
        return -1;
    }
    if (pipe2(release, O_CLOEXEC) < 0) {
        csys_set_error(err, errno, "pipe", "pipe: %s", strerror(errno));
        close(ready[0]);
        close(ready[1]);
        return -1;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        csys_set_error(err, errno, "fork", "fork: %s", strerror(errno));
        close(ready[0]); close(ready[1]); close(release[0]); close(release[1]);
        return -1;
    }
    if (pid == 0) {
        /* child: C only from here */
        close(ready[0]);
        close(release[1]);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(125);
        if (unshare(CLONE_NEWUSER) < 0) {
            csys_set_error(err_out, errno, "userns",
                           "cannot create a user namespace: %s (are unprivileged user namespaces disabled? "
                           "see sysctl kernel.unprivileged_userns_clone / user.max_user_namespaces)",
                           strerror(errno));
            _exit(125);
        }
        if (write(ready[1], "r", 1) != 1) _exit(125);
        close(ready[1]);
        if (read_byte(release[0]) < 0) _exit(125); /* the parent gave up */
        close(release[0]);
        if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0) {
            csys_set_error(err_out, errno, "userns", "cannot become root in the user namespace: %s", strerror(errno));
            _exit(125);
        }
        csys_close_fds_except(keep, nkeep);
        _exit(fn(arg));
    }
    close(ready[1]);
    close(release[0]);
    child->pid = pid;
    child->ready_fd = ready[0];
    child->release_fd = release[1];
    return 0;
}

int csys_userns_wait_ready(csys_userns_child *child) {
    int rc = read_byte(child->ready_fd);
    close(child->ready_fd);
    child->ready_fd = -1;
    return rc;
}

int csys_userns_release(csys_userns_child *child) {
    ssize_t n;
    do n = write(child->release_fd, "g", 1);
    while (n < 0 && errno == EINTR);
    close(child->release_fd);
    child->release_fd = -1;
    return n == 1 ? 0 : -1;
}

int csys_wait_exit(pid_t pid) {
    int status;
    for (;;) {
        pid_t r = waitpid(pid, &status, 0);
        if (r == pid) break;
        if (r < 0 && errno == EINTR) continue;
        return -1;
    }
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return -1;
}

static int write_file(const char *path, const char *data, csys_error *err) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        csys_set_error(err, errno, "idmap", "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    size_t len = strlen(data);
    if (write(fd, data, len) != (ssize_t)len) {
        int e = errno;
        close(fd);
        csys_set_error(err, e, "idmap", "cannot write %s: %s", path, strerror(e));
        return -1;
    }
    close(fd);
    return 0;
}

int csys_write_single_map(pid_t pid, uid_t uid, gid_t gid, csys_error *err) {
    char path[64], buf[64];
    snprintf(path, sizeof path, "/proc/%d/setgroups", (int)pid);
    if (write_file(path, "deny", err) < 0) return -1;
    snprintf(path, sizeof path, "/proc/%d/uid_map", (int)pid);
    snprintf(buf, sizeof buf, "0 %u 1\n", (unsigned)uid);
    if (write_file(path, buf, err) < 0) return -1;
    snprintf(path, sizeof path, "/proc/%d/gid_map", (int)pid);
    snprintf(buf, sizeof buf, "0 %u 1\n", (unsigned)gid);
    return write_file(path, buf, err);
}

int csys_write_maps(pid_t pid, const char *uid_map, const char *gid_map, csys_error *err) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/uid_map", (int)pid);
    if (write_file(path, uid_map, err) < 0) return -1;
    snprintf(path, sizeof path, "/proc/%d/gid_map", (int)pid);
    return write_file(path, gid_map, err);
}

int csys_job_exec(void *arg) {
    csys_exec_job *j = arg;
    csys_cloexec_from(3);
    execvp(j->argv[0], j->argv);
    csys_set_error(&j->error, errno, "exec", "cannot run %s: %s", j->argv[0], strerror(errno));
    return 127;
}

pid_t csys_fork_job(csys_job_fn fn, void *arg, const int *keep, int nkeep) {
    pid_t pid = fork();
    if (pid == 0) {
        csys_close_fds_except(keep, nkeep);
        _exit(fn(arg));
    }
    return pid;
}
