/* The exec stub (stub/exec_stub.c): a sealed memfd holding it, and the last step of every
 * container process (the first one and `ctr exec`'s), which execs the command through it so
 * that the ctr binary is never what /proc/self/exe names inside a container. */
#include "include/csys_container.h"
#include "csys_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U
#endif
#ifndef F_SEAL_EXEC
#define F_SEAL_EXEC 0x0020
#endif

extern const unsigned char csys_exec_stub_elf[];
extern const size_t csys_exec_stub_elf_len;

int csys_exec_stub_open(csys_error *err) {
    int fd = (int)syscall(SYS_memfd_create, "ctr-exec", MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC);
    if (fd < 0 && errno == EINVAL) /* before Linux 6.3: no MFD_EXEC, memfds are executable */
        fd = (int)syscall(SYS_memfd_create, "ctr-exec", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) {
        csys_set_error(err, errno, "exec-stub", "cannot create a memfd for the exec stub: %s%s", strerror(errno),
                       errno == EACCES ? " (vm.memfd_noexec forbids executable memfds)" : "");
        return -1;
    }
    size_t off = 0;
    while (off < csys_exec_stub_elf_len) {
        ssize_t n = write(fd, csys_exec_stub_elf + off, csys_exec_stub_elf_len - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            csys_set_error(err, errno, "exec-stub", "cannot write the exec stub: %s", strerror(errno));
            close(fd);
            return -1;
        }
        off += (size_t)n;
    }
    fchmod(fd, 0555);
    /* nobody may change it from here: not its bytes, size or (where the kernel has the seal)
     * its mode */
    int seals = F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE;
    if (fcntl(fd, F_ADD_SEALS, seals | F_SEAL_EXEC) < 0 && fcntl(fd, F_ADD_SEALS, seals) < 0) {
        csys_set_error(err, errno, "exec-stub", "cannot seal the exec stub: %s", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

int csys_resolve_command(const char *cmd, const char *path_env, char *out, size_t outlen) {
    size_t clen = strlen(cmd);
    if (clen == 0) return -ENOENT;
    if (strchr(cmd, '/')) {
        if (clen >= outlen) return -ENAMETOOLONG;
        memcpy(out, cmd, clen + 1);
        return 0;
    }
    const char *path = path_env && *path_env ? path_env : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    int eacces = 0;
    while (1) {
        const char *end = strchr(path, ':');
        size_t len = end ? (size_t)(end - path) : strlen(path);
        const char *dir = path;
        if (len == 0) { dir = "."; len = 1; }
        if (len + clen + 2 <= outlen) {
            memcpy(out, dir, len);
            out[len] = '/';
            memcpy(out + len + 1, cmd, clen + 1);
            struct stat st;
            if (stat(out, &st) == 0 && S_ISREG(st.st_mode)) {
                if (faccessat(AT_FDCWD, out, X_OK, AT_EACCESS) == 0) return 0;
                if (errno == EACCES) eacces = 1;
            } else if (errno == EACCES) {
                eacces = 1;
            }
        }
        if (!end) break;
        path = end + 1;
    }
    return eacces ? -EACCES : -ENOENT;
}

void csys_exec_via_stub(int stub_fd, int sync_fd, int init, const char *path, const char *const *argv, const char *const *envp) {
    int argc = 0;
    while (argv[argc]) argc++;
    const char *sargv[argc + 6];
    char syncbuf[16];
    snprintf(syncbuf, sizeof syncbuf, "%d", sync_fd);
    sargv[0] = init ? "ctr-init" : "ctr-exec";
    sargv[1] = "--ctr-stub=1";
    sargv[2] = init ? "init" : "exec";
    sargv[3] = syncbuf;
    sargv[4] = path;
    for (int i = 0; i <= argc; i++) sargv[5 + i] = argv[i];
    /* the stub makes it close-on-exec again before the command's exec */
    if (sync_fd >= 0) fcntl(sync_fd, F_SETFD, 0);
    syscall(SYS_execveat, stub_fd, "", sargv, envp, AT_EMPTY_PATH);
    if (errno == ENOSYS || errno == EPERM) {
        /* a seccomp profile without execveat: the same file by its /proc path */
        char fdp[64];
        snprintf(fdp, sizeof fdp, "/proc/self/fd/%d", stub_fd);
        int e = errno;
        execve(fdp, (char *const *)sargv, (char *const *)envp);
        if (errno == ENOENT) errno = e;
    }
    int e = errno;
    if (sync_fd >= 0) fcntl(sync_fd, F_SETFD, FD_CLOEXEC);
    errno = e;
}

#include <sys/ioctl.h>
#ifndef NS_GET_OWNER_UID
#define NS_GET_OWNER_UID _IO(0xb7, 0x4)
#endif

int csys_ns_owner_uid(int fd, uid_t *uid) {
    return ioctl(fd, NS_GET_OWNER_UID, uid) < 0 ? -1 : 0;
}

/* ---- removing a finished container's dirs after ctr has returned ---- */

#include <sched.h>
#include <signal.h>
#include <sys/wait.h>

struct rm_args {
    int stub_fd, dirfd, userns_fd;
    const char *const *argv;
};

/* The vfork child: shares our memory until it execs, so syscalls only, on its own stack */
static int rm_child(void *arg) {
    struct rm_args *a = arg;
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) { dup2(null, 0); dup2(null, 1); dup2(null, 2); }
    fcntl(a->dirfd, F_SETFD, 0);
    if (a->userns_fd >= 0) fcntl(a->userns_fd, F_SETFD, 0);
    setsid();
    static const char *const envp[] = {NULL};
    syscall(SYS_execveat, a->stub_fd, "", a->argv, envp, AT_EMPTY_PATH);
    _exit(127);
}

pid_t csys_remove_detached(int stub_fd, int dirfd, const char *const *names, int n, int userns_fd) {
    if (n < 1 || n > 8) return -1;
    char dfd[16], ufd[16];
    snprintf(dfd, sizeof dfd, "%d", dirfd);
    snprintf(ufd, sizeof ufd, "%d", userns_fd);
    const char *argv[6 + 8] = {"ctr-rmtree", "--ctr-stub=1", "rmtree", dfd, ufd};
    for (int i = 0; i < n; i++) argv[5 + i] = names[i];
    argv[5 + n] = NULL;
    struct rm_args a = {stub_fd, dirfd, userns_fd, argv};
    /* vfork-style: no copy of our page tables (fork's cost is the point here) */
    size_t size = 64 * 1024;
    char *stack = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED) return -1;
    pid_t pid = clone(rm_child, stack + size, CLONE_VM | CLONE_VFORK | SIGCHLD, &a);
    munmap(stack, size);
    return pid;
}
