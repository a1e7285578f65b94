#include "csys_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <linux/openat2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

void csys_set_error(csys_error *e, int err, const char *stage, const char *fmt, ...) {
    if (!e) return;
    if (e->stage[0]) return; /* keep the first (innermost) error */
    e->err = err;
    snprintf(e->stage, sizeof e->stage, "%s", stage);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
}

void *csys_shared_alloc(size_t size) {
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    memset(p, 0, size);
    return p;
}

void csys_shared_free(void *p, size_t size) {
    if (p) munmap(p, size);
}

int csys_openat2_in_root(int rootfd, const char *path, int flags, mode_t mode) {
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = (uint64_t)(flags | O_CLOEXEC);
    how.mode = (flags & O_CREAT) ? mode : 0;
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    if (!path || !*path) path = ".";
    for (;;) {
        long fd = syscall(SYS_openat2, rootfd, path, &how, sizeof how);
        if (fd >= 0) return (int)fd;
        if (errno == EINTR || errno == EAGAIN) continue;
        return -1;
    }
}

int csys_openat2_beneath(int rootfd, const char *path, int flags) {
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = (uint64_t)(flags | O_CLOEXEC);
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    for (;;) {
        long fd = syscall(SYS_openat2, rootfd, path && *path ? path : ".", &how, sizeof how);
        if (fd >= 0) return (int)fd;
        if (errno == EINTR || errno == EAGAIN) continue;
        return -1;
    }
}

int csys_write_all(int fd, const void *buf, size_t len) {
    const unsigned char *p = buf;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

void csys_write_error(csys_error *err, const char *name) {
    int e = errno;
    if (name && e != 0)
        csys_set_error(err, e, "write", "cannot write %s: %s", name, strerror(e));
    else
        csys_set_error(err, e, "write", "write failed: %s", strerror(e));
}

int csys_clean_path(const char *in, char *out, size_t outsz) {
    /* stack of component start offsets in out */
    size_t olen = 0;
    size_t starts[1024];
    size_t depth = 0;
    const char *p = in;
    while (*p) {
        while (*p == '/') p++;
        if (!*p) break;
        const char *q = p;
        while (*q && *q != '/') q++;
        size_t n = (size_t)(q - p);
        if (n == 1 && p[0] == '.') {
            /* skip */
        } else if (n == 2 && p[0] == '.' && p[1] == '.') {
            if (depth > 0) {
                depth--;
                olen = starts[depth];
                if (olen > 0) olen--; /* drop the separator */
            }
        } else {
            if (depth >= sizeof starts / sizeof starts[0]) return -1;
            size_t need = olen + (olen ? 1 : 0) + n + 1;
            if (need > outsz) return -1;
            if (olen) out[olen++] = '/';
            starts[depth++] = olen;
            memcpy(out + olen, p, n);
            olen += n;
        }
        p = q;
    }
    if (outsz) out[olen] = 0;
    return olen ? 0 : -1;
}

/* ---- string set (open addressing, FNV-1a) ---- */
static uint64_t fnv(const char *s) {
    uint64_t h = 1469598103934665603ULL;
    while (*s) { h ^= (unsigned char)*s++; h *= 1099511628211ULL; }
    return h;
}

int csys_strset_has(const csys_strset *s, const char *str) {
    if (!s->cap) return 0;
    size_t i = fnv(str) & (s->cap - 1);
    while (s->slots[i]) {
        if (strcmp(s->slots[i], str) == 0) return 1;
        i = (i + 1) & (s->cap - 1);
    }
    return 0;
}

static int strset_grow(csys_strset *s) {
    size_t ncap = s->cap ? s->cap * 2 : 1024;
    char **ns = calloc(ncap, sizeof *ns);
    if (!ns) return -1;
    for (size_t k = 0; k < s->cap; k++) {
        char *v = s->slots[k];
        if (!v) continue;
        size_t i = fnv(v) & (ncap - 1);
        while (ns[i]) i = (i + 1) & (ncap - 1);
        ns[i] = v;
    }
    free(s->slots);
    s->slots = ns;
    s->cap = ncap;
    return 0;
}

int csys_strset_add(csys_strset *s, const char *str) {
    if ((s->len + 1) * 2 > s->cap && strset_grow(s) < 0) return -1;
    size_t i = fnv(str) & (s->cap - 1);
    while (s->slots[i]) {
        if (strcmp(s->slots[i], str) == 0) return 0;
        i = (i + 1) & (s->cap - 1);
    }
    s->slots[i] = strdup(str);
    if (!s->slots[i]) return -1;
    s->len++;
    return 0;
}

void csys_strset_free(csys_strset *s) {
    for (size_t k = 0; k < s->cap; k++) free(s->slots[k]);
    free(s->slots);
    s->slots = NULL;
    s->cap = s->len = 0;
}

/* ---- rmtree ---- */
static int rmtree_fd(int dirfd, const char *name, csys_error *err, int depth, uint64_t *freed) {
    struct stat st;
    if (freed && fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode) && st.st_nlink <= 1)
        *freed += (uint64_t)st.st_blocks * 512;
    if (unlinkat(dirfd, name, 0) == 0 || errno == ENOENT) return 0;
    if (errno != EISDIR && errno != EPERM) {
        /* EACCES: the parent is not writable for us; try to make it so (we own it) */
        if (errno == EACCES) {
            if (fchmod(dirfd, 0700) == 0 && unlinkat(dirfd, name, 0) == 0) return 0;
            if (errno == EISDIR) goto isdir;
        }
        csys_set_error(err, errno, "remove", "cannot remove %s: %s", name, strerror(errno));
        return -1;
    }
isdir:
    if (depth > 4096) {
        csys_set_error(err, ELOOP, "remove", "directory tree too deep at %s", name);
        return -1;
    }
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == EACCES) {
        fchmodat(dirfd, name, 0700, 0);
        fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    if (fd < 0) {
        if (errno == ENOENT) return 0;
        csys_set_error(err, errno, "remove", "cannot open %s: %s", name, strerror(errno));
        return -1;
    }
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        csys_set_error(err, errno, "remove", "cannot read %s: %s", name, strerror(errno));
        return -1;
    }
    int rc = 0;
    int made_writable = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        if (de->d_type == DT_DIR) {
            if (rmtree_fd(fd, de->d_name, err, depth + 1, freed) < 0) { rc = -1; break; }
            continue;
        }
        if (freed && fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_nlink <= 1)
            *freed += (uint64_t)st.st_blocks * 512;
        if (unlinkat(fd, de->d_name, 0) == 0 || errno == ENOENT) continue;
        if (errno == EACCES && !made_writable) {
            made_writable = 1;
            fchmod(fd, 0700);
            if (unlinkat(fd, de->d_name, 0) == 0) continue;
        }
        if (errno == EISDIR) {
            if (rmtree_fd(fd, de->d_name, err, depth + 1, freed) < 0) { rc = -1; break; }
            continue;
        }
        csys_set_error(err, errno, "remove", "cannot remove %s/%s: %s", name, de->d_name, strerror(errno));
        rc = -1;
        break;
    }
    closedir(d);
    if (freed && fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) *freed += (uint64_t)st.st_blocks * 512;
    if (rc == 0 && unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT) {
        csys_set_error(err, errno, "remove", "cannot remove directory %s: %s", name, strerror(errno));
        rc = -1;
    }
    return rc;
}

int csys_rmtree_at(int dirfd, const char *name, csys_error *err) {
    return rmtree_fd(dirfd, name, err, 0, NULL);
}

int csys_rmtree_count(int dirfd, const char *name, uint64_t *freed, csys_error *err) {
    return rmtree_fd(dirfd, name, err, 0, freed);
}

int csys_path_in(const char *path, const char *const *set, int n) {
    for (int i = 0; i < n; i++) {
        size_t l = strlen(set[i]);
        if (strncmp(path, set[i], l) == 0 && (path[l] == 0 || path[l] == '/')) return 1;
    }
    return 0;
}

int csys_path_holds(const char *path, const char *const *set, int n) {
    size_t l = strlen(path);
    for (int i = 0; i < n; i++) {
        if (l == 0 && set[i][0]) return 1;
        if (strncmp(set[i], path, l) == 0 && set[i][l] == '/') return 1;
    }
    return 0;
}

static int clear_dir(int dfd, const char *prefix, const char *const *keep, int nkeep, csys_error *err, int depth) {
    if (depth > 4096) {
        csys_set_error(err, ELOOP, "remove", "directory tree too deep at %s", prefix);
        return -1;
    }
    int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd < 0 ? NULL : fdopendir(fd);
    if (!d) {
        if (fd >= 0) close(fd);
        csys_set_error(err, errno, "remove", "cannot read /%s: %s", prefix, strerror(errno));
        return -1;
    }
    /* collect first: removing while reading a directory is unspecified */
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **nn = realloc(names, cap * sizeof *nn);
            if (!nn) { rc = -1; break; }
            names = nn;
        }
        if (!(names[n] = strdup(de->d_name))) { rc = -1; break; }
        n++;
    }
    closedir(d);
    if (rc < 0) csys_set_error(err, ENOMEM, "memory", "out of memory");
    char path[CSYS_MAX_PATH];
    for (size_t i = 0; i < n; i++) {
        if (rc == 0) {
            snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "/" : "", names[i]);
            if (csys_path_in(path, keep, nkeep)) {
                /* kept */
            } else if (csys_path_holds(path, keep, nkeep)) {
                int sub = openat(dfd, names[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (sub < 0) {
                    csys_set_error(err, errno, "remove", "cannot open /%s: %s", path, strerror(errno));
                    rc = -1;
                } else {
                    rc = clear_dir(sub, path, keep, nkeep, err, depth + 1);
                    close(sub);
                }
            } else if (rmtree_fd(dfd, names[i], err, 0, NULL) < 0) {
                rc = -1;
            }
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

int csys_clear_tree(int root_fd, const char *dir, const char *const *keep, int nkeep, csys_error *err) {
    int fd = *dir ? csys_openat2_in_root(root_fd, dir, O_RDONLY | O_DIRECTORY, 0)
                  : openat(root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return 0;
        csys_set_error(err, errno, "remove", "cannot open /%s: %s", dir, strerror(errno));
        return -1;
    }
    int rc = clear_dir(fd, dir, keep, nkeep, err, 0);
    close(fd);
    return rc;
}

int csys_job_rmtree(void *arg) {
    csys_rmtree_job *j = arg;
    return csys_rmtree_count(j->dirfd, j->name, &j->freed, &j->error) == 0 ? 0 : 1;
}

int csys_job_chown(void *arg) {
    csys_chown_job *j = arg;
    if (fchownat(j->dirfd, j->name, j->uid, j->gid, AT_SYMLINK_NOFOLLOW) < 0) {
        csys_set_error(&j->error, errno, "chown", "cannot chown %s to %u:%u: %s", j->name, j->uid, j->gid, strerror(errno));
        return 1;
    }
    if (fchmodat(j->dirfd, j->name, j->mode & 07777, 0) < 0) {
        csys_set_error(&j->error, errno, "chmod", "cannot chmod %s: %s", j->name, strerror(errno));
        return 1;
    }
    return 0;
}

ssize_t csys_copy_file_range(int in_fd, int out_fd, size_t len) {
    return copy_file_range(in_fd, NULL, out_fd, NULL, len, 0);
}

ssize_t csys_lgetxattr(const char *path, const char *name, void *value, size_t size) {
    return lgetxattr(path, name, value, size);
}

int csys_lsetxattr(const char *path, const char *name, const void *value, size_t size) {
    return lsetxattr(path, name, value, size, 0);
}

int csys_pipe_cloexec(int fds[2]) {
    if (pipe2(fds, O_CLOEXEC) < 0) return -1;
    fcntl(fds[1], F_SETPIPE_SZ, 1 << 20); /* fewer wakeups for streamed layers; best effort */
    return 0;
}

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

void csys_cloexec_from(unsigned first) {
    if (syscall(SYS_close_range, first, ~0U, CLOSE_RANGE_CLOEXEC) == 0) return;
    struct rlimit rl;
    unsigned max = 65536;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < max) max = (unsigned)rl.rlim_cur;
    for (unsigned fd = first; fd < max; fd++) fcntl((int)fd, F_SETFD, FD_CLOEXEC); /* EBADF: not open */
}

ssize_t csys_send_with_fds(int sock, const void *data, size_t len, const int *fds, int nfds, int flags) {
    if (nfds < 0 || nfds > CSYS_SCM_MAX_FDS) { errno = E2BIG; return -1; }
    struct iovec iov = {(void *)data, len};
    union { char buf[CMSG_SPACE(sizeof(int) * CSYS_SCM_MAX_FDS)]; struct cmsghdr align; } u;
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (nfds > 0) {
        memset(u.buf, 0, CMSG_SPACE(sizeof(int) * (size_t)nfds));
        msg.msg_control = u.buf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
    }
    ssize_t n;
    do n = sendmsg(sock, &msg, flags);
    while (n < 0 && errno == EINTR);
    return n;
}

ssize_t csys_recv_with_fds(int sock, void *data, size_t len, int *fds, int maxfds, int *nfds) {
    struct iovec iov = {data, len};
    union { char buf[CMSG_SPACE(sizeof(int) * CSYS_SCM_MAX_FDS)]; struct cmsghdr align; } u;
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = u.buf;
    msg.msg_controllen = sizeof u.buf;
    ssize_t n;
    do n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    *nfds = 0;
    if (n < 0) return n;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        int count = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        for (int i = 0; i < count; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + (size_t)i * sizeof(int), sizeof fd);
            if (*nfds < maxfds) fds[(*nfds)++] = fd;
            else close(fd);
        }
    }
    return n;
}


/* one C.UTF-8 locale object for the process, made on first use */
static locale_t utf8_locale;
static pthread_once_t utf8_once = PTHREAD_ONCE_INIT;
static void make_utf8_locale(void) { utf8_locale = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0); }

locale_t csys_utf8_begin(void) {
    pthread_once(&utf8_once, make_utf8_locale);
    return utf8_locale ? uselocale(utf8_locale) : (locale_t)0;
}

void csys_utf8_end(locale_t old) {
    if (old) uselocale(old);
}
