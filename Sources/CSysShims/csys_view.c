/* A view of a directory made of hard links (the build context as RUN --mount=type=bind sees
 * it): every path is resolved beneath its root with no symlink followed. */
#include "csys_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The parent directory of `rel` beneath root (O_PATH), refusing symlinks and "..": the walker
 * saw real directories, so anything else means the tree changed under it. *name points into
 * rel at the last component. */
static int open_parent(int root, const char *rel, char *buf, size_t cap, const char **name) {
    size_t n = strlen(rel);
    if (n == 0 || n >= cap) { errno = n ? ENAMETOOLONG : EINVAL; return -1; }
    memcpy(buf, rel, n + 1);
    char *slash = strrchr(buf, '/');
    const char *parent = ".";
    if (slash) {
        *slash = 0;
        parent = buf;
        *name = rel + (slash - buf) + 1;
    } else {
        *name = rel;
    }
    if (!**name || !strcmp(*name, ".") || !strcmp(*name, "..")) { errno = EINVAL; return -1; }
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    for (;;) {
        long fd = syscall(SYS_openat2, root, parent, &how, sizeof how);
        if (fd >= 0) return (int)fd;
        if (errno == EINTR || errno == EAGAIN) continue;
        return -1;
    }
}

/* As root, the view keeps the source's owner (best effort); a user's view is the user's. */
static void keep_owner(int dir, const char *name, const struct stat *st) {
    if (geteuid() == 0 && fchownat(dir, name, st->st_uid, st->st_gid, AT_SYMLINK_NOFOLLOW) < 0) {
        /* not fatal: the content is what matters */
    }
}

static int copy_file(int sp, int dp, const char *name, const struct stat *st, int keep, csys_error *err, const char *rel) {
    int in = openat(sp, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (in < 0) {
        csys_set_error(err, errno, "view", "cannot read %s: %s", rel, strerror(errno));
        return -1;
    }
    struct stat ist;
    if (fstat(in, &ist) < 0 || !S_ISREG(ist.st_mode)) {
        close(in);
        csys_set_error(err, EINVAL, "view", "%s changed while the build read it", rel);
        return -1;
    }
    int out = openat(dp, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (out < 0) {
        close(in);
        csys_set_error(err, errno, "view", "cannot create %s: %s", rel, strerror(errno));
        return -1;
    }
    int rc = 0;
    for (;;) {
        ssize_t k = copy_file_range(in, NULL, out, NULL, 1 << 30, 0);
        if (k > 0) continue;
        if (k == 0) break;
        if (errno == EINTR) continue;
        if (errno != EXDEV && errno != ENOSYS && errno != EINVAL && errno != EOPNOTSUPP) { rc = -1; break; }
        /* a plain copy of the rest */
        char buf[1 << 16];
        for (;;) {
            ssize_t r = read(in, buf, sizeof buf);
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) { rc = -1; break; }
            if (r == 0) break;
            if (csys_write_all(out, buf, (size_t)r) < 0) { rc = -1; break; }
        }
        break;
    }
    if (rc == 0) {
        if (keep && geteuid() == 0 && fchown(out, ist.st_uid, ist.st_gid) < 0) { /* best effort */ }
        if (fchmod(out, ist.st_mode & 07777) < 0) rc = -1;
        struct timespec ts[2] = {ist.st_atim, ist.st_mtim};
        if (rc == 0 && futimens(out, ts) < 0) rc = -1;
    }
    if (rc < 0) csys_set_error(err, errno, "view", "cannot copy %s: %s", rel, strerror(errno));
    close(in);
    close(out);
    return rc;
}

/* The parents of `rel` in the context and in the view (both O_PATH), or -1 with err set. */
static int open_parents(int src_root, int dst_root, const char *rel, char *sbuf, char *dbuf, const char **name,
                        const char **dname, int *sp, int *dp, csys_error *err) {
    *sp = open_parent(src_root, rel, sbuf, CSYS_MAX_PATH, name);
    if (*sp < 0) {
        csys_set_error(err, errno, "view", "cannot open the directory of %s: %s", rel, strerror(errno));
        return -1;
    }
    *dp = open_parent(dst_root, rel, dbuf, CSYS_MAX_PATH, dname);
    if (*dp < 0) {
        csys_set_error(err, errno, "view", "cannot open the view's directory of %s: %s", rel, strerror(errno));
        close(*sp);
        return -1;
    }
    return 0;
}

int csys_view_add(int src_root, int dst_root, const char *rel, int copy, csys_error *err) {
    char sbuf[CSYS_MAX_PATH], dbuf[CSYS_MAX_PATH];
    const char *name = NULL, *dname = NULL;
    int sp, dp;
    if (open_parents(src_root, dst_root, rel, sbuf, dbuf, &name, &dname, &sp, &dp, err) < 0) return -1;
    int rc = 0;
    struct stat st;
    if (fstatat(sp, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        csys_set_error(err, errno, "view", "cannot stat %s: %s", rel, strerror(errno));
        rc = -1;
    } else if (S_ISDIR(st.st_mode)) {
        /* 0700 while it fills; csys_view_finish_dir gives it its mode */
        if (mkdirat(dp, dname, 0700) < 0 && errno != EEXIST) {
            csys_set_error(err, errno, "view", "cannot create %s: %s", rel, strerror(errno));
            rc = -1;
        }
    } else if (S_ISLNK(st.st_mode)) {
        char target[PATH_MAX];
        ssize_t n = readlinkat(sp, name, target, sizeof target - 1);
        if (n < 0) {
            csys_set_error(err, errno, "view", "cannot read the link %s: %s", rel, strerror(errno));
            rc = -1;
        } else {
            target[n] = 0;
            if (symlinkat(target, dp, dname) < 0) {
                csys_set_error(err, errno, "view", "cannot create %s: %s", rel, strerror(errno));
                rc = -1;
            } else if (!copy) {
                keep_owner(dp, dname, &st);
            }
        }
    } else if (S_ISREG(st.st_mode)) {
        /* a hard link (never following a symlink); a copy where the ids must be the caller's,
         * or where the kernel refuses the link: another filesystem, protected_hardlinks */
        if (copy || linkat(sp, name, dp, dname, 0) < 0) {
            if (!copy && errno != EXDEV && errno != EPERM && errno != EMLINK && errno != EACCES) {
                csys_set_error(err, errno, "view", "cannot link %s: %s", rel, strerror(errno));
                rc = -1;
            } else {
                rc = copy_file(sp, dp, dname, &st, !copy, err, rel);
            }
        }
    } else {
        csys_set_error(err, EINVAL, "view", "%s: only files, directories and symlinks can be mounted", rel);
        rc = -1;
    }
    close(sp);
    close(dp);
    return rc;
}

int csys_view_finish_dir(int src_root, int dst_root, const char *rel, csys_error *err) {
    struct stat st;
    int rc;
    if (!rel || !*rel) {
        /* the root itself (dst_root opened O_RDONLY) */
        if (fstat(src_root, &st) < 0) {
            csys_set_error(err, errno, "view", "cannot stat the context: %s", strerror(errno));
            return -1;
        }
        if (geteuid() == 0 && fchown(dst_root, st.st_uid, st.st_gid) < 0) { /* best effort */ }
        struct timespec ts[2] = {st.st_atim, st.st_mtim};
        rc = fchmod(dst_root, st.st_mode & 07777) < 0 ? -1 : futimens(dst_root, ts);
        if (rc < 0) csys_set_error(err, errno, "view", "cannot set the view's mode: %s", strerror(errno));
        return rc;
    }
    char sbuf[CSYS_MAX_PATH], dbuf[CSYS_MAX_PATH];
    const char *name = NULL, *dname = NULL;
    int sp, dp;
    if (open_parents(src_root, dst_root, rel, sbuf, dbuf, &name, &dname, &sp, &dp, err) < 0) return -1;
    struct stat dst;
    rc = fstatat(sp, name, &st, AT_SYMLINK_NOFOLLOW);
    if (rc == 0 && (fstatat(dp, dname, &dst, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(dst.st_mode))) {
        if (rc == 0) errno = ENOTDIR;
        rc = -1;
    }
    if (rc == 0) {
        keep_owner(dp, dname, &st);
        struct timespec ts[2] = {st.st_atim, st.st_mtim};
        rc = fchmodat(dp, dname, st.st_mode & 07777, 0);
        if (rc == 0) rc = utimensat(dp, dname, ts, AT_SYMLINK_NOFOLLOW);
    }
    if (rc < 0) csys_set_error(err, errno, "view", "cannot finish %s: %s", rel, strerror(errno));
    close(sp);
    close(dp);
    return rc;
}
