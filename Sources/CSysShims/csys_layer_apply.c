/*
 * Applying a tar layer to a directory, safely.
 *
 * Every entry name is cleaned lexically ("..", "." and leading "/" removed) and its parent
 * directory is opened with openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS) relative to the
 * root, so symlinks met on the way (absolute or relative) resolve inside the root. The final
 * component is then created with *at() calls that never follow it. Hardlink targets are
 * resolved the same way. Nothing here touches process-wide state (cwd, umask).
 */
#include "csys_internal.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <locale.h>
#include <unistd.h>

#define WH_PREFIX ".wh."
#define WH_OPAQUE ".wh..wh..opq"
#define WH_META ".wh..wh."

typedef struct deferred_dir {
    char *path;
    mode_t mode;
    struct timespec mtime;
    int mode_only; /* a lower layer's directory opened up by unlock_dirs: put its mode back */
    size_t seq;
} deferred_dir;

typedef struct applier {
    csys_apply *a;
    struct archive *ar;
    csys_instream in;
    csys_strset created;
    char cache_path[CSYS_MAX_PATH];
    int cache_fd;
    deferred_dir *dirs;
    size_t ndirs, capdirs;
} applier;

static la_ssize_t ar_read(struct archive *ar, void *client, const void **buf) {
    applier *ap = client;
    ssize_t n = csys_instream_read(&ap->in, buf);
    if (n < 0) {
        archive_set_error(ar, EIO, "%s", ap->a->error.message);
        return -1;
    }
    return n;
}

static void invalidate_cache(applier *ap) {
    if (ap->cache_fd >= 0) close(ap->cache_fd);
    ap->cache_fd = -1;
    ap->cache_path[0] = 0;
}

/* Create the missing directories of `path` (relative, cleaned), each resolved in the root. */
static int mkdir_all(applier *ap, const char *path) {
    char prefix[CSYS_MAX_PATH];
    size_t len = strlen(path);
    for (size_t i = 0; i <= len; i++) {
        if (path[i] != '/' && path[i] != 0) continue;
        memcpy(prefix, path, i);
        prefix[i] = 0;
        int fd = csys_openat2_in_root(ap->a->root_fd, prefix, O_PATH | O_DIRECTORY, 0);
        if (fd >= 0) { close(fd); continue; }
        if (errno != ENOENT) {
            csys_set_error(&ap->a->error, errno, "mkdir", "cannot open directory %s: %s", prefix, strerror(errno));
            return -1;
        }
        /* parent of prefix exists (previous iteration) */
        char *slash = strrchr(prefix, '/');
        const char *base = slash ? slash + 1 : prefix;
        int pfd;
        if (slash) {
            *slash = 0;
            pfd = csys_openat2_in_root(ap->a->root_fd, prefix, O_PATH | O_DIRECTORY, 0);
            *slash = '/';
        } else {
            pfd = csys_openat2_in_root(ap->a->root_fd, "", O_PATH | O_DIRECTORY, 0);
        }
        if (pfd < 0) {
            csys_set_error(&ap->a->error, errno, "mkdir", "cannot open parent of %s: %s", prefix, strerror(errno));
            return -1;
        }
        if (mkdirat(pfd, base, 0755) < 0 && errno != EEXIST) {
            int e = errno;
            close(pfd);
            csys_set_error(&ap->a->error, e, "mkdir", "cannot create directory %s: %s", prefix, strerror(e));
            return -1;
        }
        close(pfd);
    }
    return 0;
}

static int defer_dir_ex(applier *ap, const char *path, mode_t mode, struct timespec mtime, int mode_only);

/* Rootless without a user namespace (CSYS_OWNERS_XATTR) there is no CAP_DAC_OVERRIDE: a
 * directory that an earlier layer left without u+rwx (0555 /usr, 0000 dirs) could be neither
 * entered nor changed. Give the owner rwx on `dir` and each of its ancestors for the rest of
 * this layer; finish_dirs puts their modes back. Best effort: failures are left to the
 * operation that follows to report. */
static void unlock_dirs(applier *ap, const char *dir) {
    if (ap->a->owners != CSYS_OWNERS_XATTR) return;
    char prefix[CSYS_MAX_PATH];
    size_t len = strlen(dir), n = 0;
    for (;;) { /* "" (the root), then "a", "a/b", ... up to dir itself */
        memcpy(prefix, dir, n);
        prefix[n] = 0;
        int fd = csys_openat2_in_root(ap->a->root_fd, prefix, O_PATH | O_DIRECTORY, 0);
        if (fd < 0) return; /* missing (created 0755 later) or not a directory */
        struct stat st;
        if (fstat(fd, &st) == 0 && (st.st_mode & 0700) != 0700) {
            char proc[64];
            snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd); /* the inode the fd holds */
            if (chmod(proc, (st.st_mode & 07777) | 0700) == 0)
                defer_dir_ex(ap, prefix, st.st_mode & 07777, st.st_mtim, 1);
        }
        close(fd);
        if (n >= len) return;
        for (n++; n < len && dir[n] != '/'; n++) {}
    }
}

/* Open (cached) the parent directory `dir` inside the root. With create, missing
 * directories are made (0755), as docker does. Returns fd, or -1; errno ENOENT when
 * !create and missing. */
static int get_parent(applier *ap, const char *dir, int create) {
    if (ap->cache_fd >= 0 && strcmp(ap->cache_path, dir) == 0) return ap->cache_fd;
    invalidate_cache(ap);
    unlock_dirs(ap, dir);
    int fd = csys_openat2_in_root(ap->a->root_fd, dir, O_PATH | O_DIRECTORY, 0);
    if (fd < 0 && errno == ENOENT && create) {
        if (mkdir_all(ap, dir) < 0) return -1;
        fd = csys_openat2_in_root(ap->a->root_fd, dir, O_PATH | O_DIRECTORY, 0);
    }
    if (fd < 0) {
        if (errno == ENOENT && !create) return -1;
        int e = errno;
        csys_set_error(&ap->a->error, e, "resolve",
                       e == ENOTDIR ? "%s: a path component is not a directory"
                                    : "cannot open directory %s: %s",
                       *dir ? dir : "/", strerror(e));
        errno = e;
        return -1;
    }
    snprintf(ap->cache_path, sizeof ap->cache_path, "%s", dir);
    ap->cache_fd = fd;
    return fd;
}

static int remove_existing(applier *ap, int pfd, const char *base, const char *path, int keep_dir) {
    struct stat st;
    if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        if (errno == ENOENT) return 0;
        csys_set_error(&ap->a->error, errno, "stat", "cannot stat %s: %s", path, strerror(errno));
        return -1;
    }
    if (S_ISDIR(st.st_mode)) {
        if (keep_dir) return 1;
        if (csys_rmtree_at(pfd, base, &ap->a->error) < 0) return -1;
        return 0;
    }
    if (unlinkat(pfd, base, 0) < 0 && errno != ENOENT) {
        csys_set_error(&ap->a->error, errno, "remove", "cannot replace %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* protobuf encoding of rootlesscontainers.proto Resource{uint32 uid=1; uint32 gid=2;} */
static size_t put_varint(unsigned char *p, uint32_t v) {
    size_t n = 0;
    while (v >= 0x80) { p[n++] = (unsigned char)(v | 0x80); v >>= 7; }
    p[n++] = (unsigned char)v;
    return n;
}

static int set_owner(applier *ap, int fd, int pfd, const char *base, int is_link, const char *path,
                     uint32_t uid, uint32_t gid) {
    if (ap->a->owners == CSYS_OWNERS_CHOWN) {
        int rc = fd >= 0 ? fchown(fd, uid, gid) : fchownat(pfd, base, uid, gid, AT_SYMLINK_NOFOLLOW);
        if (rc < 0) {
            if (errno == EINVAL)
                csys_set_error(&ap->a->error, errno, "chown",
                               "%s is owned by %u:%u, which is not mapped in the user namespace "
                               "(the subordinate id range in /etc/subuid or /etc/subgid is too small)",
                               path, uid, gid);
            else
                csys_set_error(&ap->a->error, errno, "chown", "cannot chown %s to %u:%u: %s", path, uid, gid,
                               strerror(errno));
            return -1;
        }
        return 0;
    }
    if ((uid == 0 && gid == 0) || is_link || fd < 0) return 0;
    unsigned char buf[16];
    size_t n = 0;
    if (uid) { buf[n++] = 0x08; n += put_varint(buf + n, uid); }
    if (gid) { buf[n++] = 0x10; n += put_varint(buf + n, gid); }
    if (fsetxattr(fd, "user.rootlesscontainers", buf, n, 0) < 0) {
        if (errno == ENOTSUP || errno == EPERM) { ap->a->ignored_xattrs++; return 0; }
        csys_set_error(&ap->a->error, errno, "xattr", "cannot record owner of %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

static int is_overlay_xattr(const char *name) {
    return strncmp(name, "trusted.overlay.", 16) == 0 || strncmp(name, "user.overlay.", 13) == 0 ||
           strncmp(name, "user.fuseoverlayfs.", 19) == 0 || strcmp(name, "user.rootlesscontainers") == 0;
}

static int set_xattrs(applier *ap, struct archive_entry *e, int fd, const char *path) {
    if (archive_entry_xattr_reset(e) == 0 || fd < 0) return 0;
    const char *name;
    const void *value;
    size_t size;
    while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
        if (is_overlay_xattr(name)) continue;
        if (fsetxattr(fd, name, value, size, 0) < 0) {
            if (errno == ENOTSUP || errno == EPERM || errno == EOPNOTSUPP || errno == EACCES) {
                ap->a->ignored_xattrs++;
                continue;
            }
            csys_set_error(&ap->a->error, errno, "xattr", "cannot set xattr %s on %s: %s", name, path, strerror(errno));
            return -1;
        }
    }
    return 0;
}

static int defer_dir_ex(applier *ap, const char *path, mode_t mode, struct timespec mtime, int mode_only) {
    if (ap->ndirs == ap->capdirs) {
        size_t ncap = ap->capdirs ? ap->capdirs * 2 : 256;
        deferred_dir *nd = realloc(ap->dirs, ncap * sizeof *nd);
        if (!nd) { csys_set_error(&ap->a->error, ENOMEM, "memory", "out of memory"); return -1; }
        ap->dirs = nd;
        ap->capdirs = ncap;
    }
    ap->dirs[ap->ndirs].path = strdup(path);
    ap->dirs[ap->ndirs].mode = mode;
    ap->dirs[ap->ndirs].mtime = mtime;
    ap->dirs[ap->ndirs].mode_only = mode_only;
    ap->dirs[ap->ndirs].seq = ap->ndirs;
    ap->ndirs++;
    return 0;
}

static int defer_dir(applier *ap, const char *path, mode_t mode, struct timespec mtime) {
    return defer_dir_ex(ap, path, mode, mtime, 0);
}

static size_t path_depth(const char *p) {
    if (!*p) return 0;
    size_t d = 1;
    for (; *p; p++) d += *p == '/';
    return d;
}

/* Deepest first (a parent's final mode may shut its children off); for one path the one that
 * counts first: the layer's latest entry for it, else the mode unlock_dirs saved. */
static int cmp_deferred(const void *x, const void *y) {
    const deferred_dir *a = x, *b = y;
    size_t da = path_depth(a->path), db = path_depth(b->path);
    if (da != db) return da > db ? -1 : 1;
    if (a->mode_only != b->mode_only) return a->mode_only - b->mode_only;
    return a->seq > b->seq ? -1 : a->seq < b->seq ? 1 : 0;
}

static int finish_dirs(applier *ap) {
    if (ap->ndirs > 1) qsort(ap->dirs, ap->ndirs, sizeof *ap->dirs, cmp_deferred);
    csys_strset done;
    memset(&done, 0, sizeof done);
    int rc = 0;
    for (size_t i = 0; i < ap->ndirs && rc == 0; i++) {
        deferred_dir *d = &ap->dirs[i];
        if (csys_strset_has(&done, d->path)) continue;
        if (csys_strset_add(&done, d->path) < 0) {
            csys_set_error(&ap->a->error, ENOMEM, "memory", "out of memory");
            rc = -1;
            break;
        }
        int fd = csys_openat2_in_root(ap->a->root_fd, d->path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0);
        if (fd < 0) continue; /* replaced or whited out later in the same layer */
        struct timespec ts[2] = {d->mtime, d->mtime};
        if (fchmod(fd, d->mode) < 0 || (!d->mode_only && futimens(fd, ts) < 0)) {
            int e = errno;
            csys_set_error(&ap->a->error, e, "chmod", "cannot set mode of %s: %s", *d->path ? d->path : "/", strerror(e));
            rc = -1;
        }
        close(fd);
    }
    csys_strset_free(&done);
    return rc;
}

static int whiteout(applier *ap, const char *dir, const char *base, const char *path) {
    csys_apply *a = ap->a;
    if (strcmp(base, WH_OPAQUE) == 0) {
        if (a->tree == CSYS_TREE_OVERLAY) {
            int pfd = get_parent(ap, dir, 1);
            if (pfd < 0) return -1;
            int fd = openat(pfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (fd < 0) {
                csys_set_error(&a->error, errno, "whiteout", "cannot open %s: %s", *dir ? dir : "/", strerror(errno));
                return -1;
            }
            int ok = 0;
            if (fsetxattr(fd, "user.overlay.opaque", "y", 1, 0) == 0) ok = 1;
            if (fsetxattr(fd, "trusted.overlay.opaque", "y", 1, 0) == 0) ok = 1;
            int e = errno;
            close(fd);
            if (!ok) {
                csys_set_error(&a->error, e, "whiteout", "cannot mark %s opaque: %s", *dir ? dir : "/", strerror(e));
                return -1;
            }
            return 0;
        }
        if (a->nskip && csys_path_in(dir, a->skip, a->nskip)) return 0;
        int pfd = get_parent(ap, dir, 0);
        if (pfd < 0) return errno == ENOENT ? 0 : -1;
        int fd = openat(pfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) return 0;
        DIR *d = fdopendir(fd);
        if (!d) { close(fd); return 0; }
        /* collect first: removing while reading a directory is unspecified */
        char **names = NULL;
        size_t n = 0, cap = 0;
        struct dirent *de;
        char child[CSYS_MAX_PATH];
        while ((de = readdir(d))) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
            snprintf(child, sizeof child, "%s%s%s", dir, *dir ? "/" : "", de->d_name);
            if (csys_strset_has(&ap->created, child)) continue;
            if (a->nskip && csys_path_in(child, a->skip, a->nskip)) continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 32;
                char **nn = realloc(names, cap * sizeof *nn);
                if (!nn) break;
                names = nn;
            }
            names[n++] = strdup(de->d_name);
        }
        closedir(d);
        int rc = 0;
        for (size_t i = 0; i < n; i++) {
            snprintf(child, sizeof child, "%s%s%s", dir, *dir ? "/" : "", names[i]);
            if (rc == 0 && a->nskip && csys_path_holds(child, a->skip, a->nskip)) {
                if (csys_clear_tree(a->root_fd, child, a->skip, a->nskip, &a->error) < 0) rc = -1;
            } else if (rc == 0 && csys_rmtree_at(pfd, names[i], &a->error) < 0) {
                rc = -1;
            }
            free(names[i]);
        }
        free(names);
        return rc;
    }
    if (strncmp(base, WH_META, strlen(WH_META)) == 0) return 0; /* aufs metadata: ignore */
    const char *victim = base + strlen(WH_PREFIX);
    if (!*victim || !strcmp(victim, ".") || !strcmp(victim, "..") || strchr(victim, '/')) {
        csys_set_error(&a->error, EINVAL, "whiteout", "invalid whiteout entry %s", path);
        return -1;
    }
    char vpath[CSYS_MAX_PATH];
    snprintf(vpath, sizeof vpath, "%s%s%s", dir, *dir ? "/" : "", victim);
    if (csys_strset_has(&ap->created, vpath)) return 0; /* same-layer files are not hidden */
    if (a->tree == CSYS_TREE_OVERLAY) {
        int pfd = get_parent(ap, dir, 1);
        if (pfd < 0) return -1;
        if (remove_existing(ap, pfd, victim, vpath, 0) < 0) return -1;
        if (mknodat(pfd, victim, S_IFCHR | 0, makedev(0, 0)) == 0) return 0;
        int e = errno;
        if (e == EPERM || e == EACCES) {
            /* no mknod here (a CI container's seccomp profile, an overlayfs store): overlayfs's
             * other whiteout form (Linux 6.7), an empty file marked by an xattr in a directory
             * marked as holding such files, which ctr's own readers know too */
            int fd = openat(pfd, victim, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
            if (fd >= 0) {
                int ok = fsetxattr(fd, "user.overlay.whiteout", "", 0, 0) == 0;
                close(fd);
                if (ok && fsetxattr(pfd, "user.overlay.whiteouts", "", 0, 0) == 0) return 0;
                /* (the parent is O_PATH: by its /proc path) */
                char pp[64];
                snprintf(pp, sizeof pp, "/proc/self/fd/%d", pfd);
                if (ok && setxattr(pp, "user.overlay.whiteouts", "", 0, 0) == 0) return 0;
                e = errno;
                unlinkat(pfd, victim, 0);
            } else {
                e = errno;
            }
        }
        csys_set_error(&a->error, e, "whiteout", "cannot create whiteout for %s: %s", vpath, strerror(e));
        return -1;
    }
    if (a->nskip && csys_path_in(vpath, a->skip, a->nskip)) return 0;
    if (a->nskip && csys_path_holds(vpath, a->skip, a->nskip)) return csys_clear_tree(a->root_fd, vpath, a->skip, a->nskip, &a->error);
    int pfd = get_parent(ap, dir, 0);
    if (pfd < 0) return errno == ENOENT ? 0 : -1;
    return csys_rmtree_at(pfd, victim, &a->error);
}

static int write_data(applier *ap, int fd, const char *path, int64_t size) {
    const void *buf;
    size_t len;
    la_int64_t off;
    int64_t pos = 0;
    for (;;) {
        int r = archive_read_data_block(ap->ar, &buf, &len, &off);
        if (r == ARCHIVE_EOF) break;
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
            csys_set_error(&ap->a->error, archive_errno(ap->ar), "archive", "reading %s: %s", path,
                           archive_error_string(ap->ar));
            return -1;
        }
        if (!len) continue;
        if (off != pos) {
            if (lseek(fd, off, SEEK_SET) < 0) goto werr;
            pos = off;
        }
        if (csys_write_all(fd, buf, len) < 0) goto werr;
        pos += (int64_t)len;
    }
    if (pos < size && ftruncate(fd, size) < 0) goto werr;
    return 0;
werr:
    csys_set_error(&ap->a->error, errno, "write", "cannot write %s: %s", path, strerror(errno));
    return -1;
}

/* Does `name` clean to the root itself ("", "/", "./", "a/..", "../..")? */
static int names_root(const char *name) {
    size_t depth = 0;
    for (const char *p = name; *p;) {
        while (*p == '/') p++;
        if (!*p) break;
        const char *q = p;
        while (*q && *q != '/') q++;
        size_t n = (size_t)(q - p);
        if (n == 2 && p[0] == '.' && p[1] == '.') {
            if (depth) depth--;
        } else if (!(n == 1 && p[0] == '.')) {
            depth++;
        }
        p = q;
    }
    return depth == 0;
}

static int apply_entry(applier *ap, struct archive_entry *e) {
    csys_apply *a = ap->a;
    char path[CSYS_MAX_PATH];
    const char *raw = archive_entry_pathname(e);
    if (!raw) {
        csys_set_error(&a->error, EINVAL, "archive", "entry with an unreadable name");
        return -1;
    }
    mode_t ftype = archive_entry_filetype(e);
    const char *hardlink = archive_entry_hardlink(e);
    uint32_t uid = (uint32_t)archive_entry_uid(e), gid = (uint32_t)archive_entry_gid(e);
    mode_t perm = archive_entry_perm(e) & 07777;
    struct timespec mtime = {archive_entry_mtime(e), archive_entry_mtime_nsec(e)};
    struct timespec ts[2] = {mtime, mtime};

    if (csys_clean_path(raw, path, sizeof path) < 0) {
        /* csys_clean_path also fails for names too long or too deep to clean: only a name that
         * really is the root may be taken as the root (a deep directory would chmod it). */
        if (!names_root(raw)) {
            csys_set_error(&a->error, ENAMETOOLONG, "archive", "entry name too %s: %.200s…",
                           strlen(raw) >= sizeof path ? "long" : "deep", raw);
            return -1;
        }
        /* the root itself ("./") */
        if (ftype == AE_IFDIR && !hardlink) return defer_dir(ap, "", perm, mtime);
        return 0;
    }
    char dir[CSYS_MAX_PATH];
    const char *base;
    char *slash = strrchr(path, '/');
    if (slash) {
        memcpy(dir, path, (size_t)(slash - path));
        dir[slash - path] = 0;
        base = slash + 1;
    } else {
        dir[0] = 0;
        base = path;
    }
    if (strncmp(base, WH_PREFIX, strlen(WH_PREFIX)) == 0) return whiteout(ap, dir, base, path);
    if (a->nskip) {
        /* paths this apply leaves alone (the container level: mounts, the store, ctr) */
        if (csys_path_in(path, a->skip, a->nskip)) return 0;
        if (ftype != AE_IFDIR && csys_path_holds(path, a->skip, a->nskip)) {
            csys_set_error(&a->error, EEXIST, "archive", "%s cannot replace the directory /%s: it holds a path this build keeps (a mount point, the store, ctr's own files)", path, path);
            return -1;
        }
    }

    if (csys_strset_add(&ap->created, path) < 0) {
        csys_set_error(&a->error, ENOMEM, "memory", "out of memory");
        return -1;
    }
    int pfd = get_parent(ap, dir, 1);
    if (pfd < 0) return -1;

    if (hardlink) {
        char target[CSYS_MAX_PATH];
        if (csys_clean_path(hardlink, target, sizeof target) < 0) {
            csys_set_error(&a->error, EINVAL, "hardlink", names_root(hardlink) ? "hardlink %s points at the root"
                                                      : "hardlink %s: target name too long or too deep", path);
            return -1;
        }
        char *ts_ = strrchr(target, '/');
        const char *tbase = ts_ ? ts_ + 1 : target;
        int tpfd;
        if (ts_) {
            *ts_ = 0;
            unlock_dirs(ap, target);
            tpfd = csys_openat2_in_root(a->root_fd, target, O_PATH | O_DIRECTORY, 0);
            *ts_ = '/';
        } else {
            tpfd = csys_openat2_in_root(a->root_fd, "", O_PATH | O_DIRECTORY, 0);
        }
        if (tpfd < 0) {
            csys_set_error(&a->error, errno, "hardlink", "hardlink %s -> %s: target not found in the layer", path, target);
            return -1;
        }
        if (remove_existing(ap, pfd, base, path, 0) < 0) { close(tpfd); return -1; }
        if (linkat(tpfd, tbase, pfd, base, 0) < 0) {
            int err = errno;
            close(tpfd);
            csys_set_error(&a->error, err, "hardlink", "hardlink %s -> %s: %s", path, target,
                           err == ENOENT ? "target not found in the layer" : strerror(err));
            return -1;
        }
        close(tpfd);
        return 0;
    }

    switch (ftype) {
    case AE_IFDIR: {
        int merged = 0;
        if (mkdirat(pfd, base, 0700) < 0) {
            if (errno != EEXIST) goto fail_create;
            int r = remove_existing(ap, pfd, base, path, 1);
            if (r < 0) return -1;
            if (r == 1) merged = 1;
            else if (mkdirat(pfd, base, 0700) < 0) goto fail_create;
        }
        (void)merged;
        int fd = openat(pfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) goto fail_create;
        if (set_owner(ap, fd, pfd, base, 0, path, uid, gid) < 0 || set_xattrs(ap, e, fd, path) < 0) {
            close(fd);
            return -1;
        }
        /* keep the directory usable until the layer is done, then set its mode and mtime */
        if (a->owners == CSYS_OWNERS_XATTR) fchmod(fd, 0700);
        close(fd);
        return defer_dir(ap, path, perm, mtime);
    }
    case AE_IFREG: {
        int fd = openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0 && errno == EEXIST) {
            if (remove_existing(ap, pfd, base, path, 0) < 0) return -1;
            fd = openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        }
        if (fd < 0) goto fail_create;
        if (write_data(ap, fd, path, archive_entry_size(e)) < 0 ||
            set_owner(ap, fd, pfd, base, 0, path, uid, gid) < 0 || set_xattrs(ap, e, fd, path) < 0) {
            close(fd);
            return -1;
        }
        if (fchmod(fd, perm) < 0 || futimens(fd, ts) < 0) {
            int err = errno;
            close(fd);
            csys_set_error(&a->error, err, "chmod", "cannot set mode of %s: %s", path, strerror(err));
            return -1;
        }
        close(fd);
        return 0;
    }
    case AE_IFLNK: {
        const char *target = archive_entry_symlink(e);
        if (!target) target = "";
        if (symlinkat(target, pfd, base) < 0) {
            if (errno != EEXIST) goto fail_create;
            if (remove_existing(ap, pfd, base, path, 0) < 0) return -1;
            if (symlinkat(target, pfd, base) < 0) goto fail_create;
        }
        if (set_owner(ap, -1, pfd, base, 1, path, uid, gid) < 0) return -1;
        utimensat(pfd, base, ts, AT_SYMLINK_NOFOLLOW);
        return 0;
    }
    case AE_IFCHR:
    case AE_IFBLK:
    case AE_IFIFO: {
        dev_t rdev = archive_entry_rdev(e);
        /* a plain tree is for users (ctr unpack, build outputs): a device node there works for
         * whoever can reach it, so only its owner may open it (the store's layers are private
         * and mounted nodev) */
        if (a->tree == CSYS_TREE_PLAIN && ftype != AE_IFIFO && (perm & 077)) {
            perm &= 0700;
            if (!a->restricted_devices) snprintf(a->first_restricted, sizeof a->first_restricted, "%s", path);
            a->restricted_devices++;
        }
        if (remove_existing(ap, pfd, base, path, 0) < 0) return -1;
        if (mknodat(pfd, base, ftype | perm, ftype == AE_IFIFO ? 0 : rdev) < 0) {
            if (ftype != AE_IFIFO && (errno == EPERM || errno == EACCES)) {
                if (!a->skipped_devices) snprintf(a->first_skipped, sizeof a->first_skipped, "%s", path);
                a->skipped_devices++;
                return 0;
            }
            goto fail_create;
        }
        if (a->owners == CSYS_OWNERS_CHOWN && set_owner(ap, -1, pfd, base, 1, path, uid, gid) < 0) return -1;
        fchmodat(pfd, base, perm, 0);
        utimensat(pfd, base, ts, AT_SYMLINK_NOFOLLOW);
        return 0;
    }
    default:
        return 0; /* sockets and unknown types are skipped, as docker does */
    }
fail_create:
    csys_set_error(&a->error, errno, "create", "cannot create %s: %s", path, strerror(errno));
    return -1;
}

static int run(csys_apply *a, int extract) {
    applier ap;
    memset(&ap, 0, sizeof ap);
    ap.a = a;
    ap.cache_fd = -1;
    int rc = -1;
    if (csys_instream_open(&ap.in, a->in_fd, &a->error) < 0) goto out;
    a->compression = ap.in.compression;
    ap.ar = archive_read_new();
    if (!ap.ar) { csys_set_error(&a->error, ENOMEM, "memory", "out of memory"); goto out; }
    archive_read_support_format_tar(ap.ar);
    if (archive_read_open(ap.ar, &ap, NULL, ar_read, NULL) != ARCHIVE_OK) {
        csys_set_error(&a->error, 0, "archive", "not a tar archive: %s", archive_error_string(ap.ar));
        goto out;
    }
    struct archive_entry *e;
    for (;;) {
        int r = archive_read_next_header(ap.ar, &e);
        if (r == ARCHIVE_EOF) break;
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
            csys_set_error(&a->error, 0, "archive", "corrupt tar after %llu entries: %s",
                           (unsigned long long)a->entries, archive_error_string(ap.ar));
            goto out;
        }
        a->entries++;
        if (extract) {
            if (apply_entry(&ap, e) < 0) goto out;
        } else if (archive_read_data_skip(ap.ar) != ARCHIVE_OK) {
            csys_set_error(&a->error, 0, "archive", "corrupt tar entry %s: %s", archive_entry_pathname(e),
                           archive_error_string(ap.ar));
            goto out;
        }
    }
    if (extract && finish_dirs(&ap) < 0) goto out;
    if (csys_instream_drain(&ap.in) < 0) goto out;
    csys_instream_finish(&ap.in, a->digest, a->diff_id);
    a->size = ap.in.in_total;
    a->tar_size = ap.in.out_total;
    rc = 0;
out:
    if (ap.ar) archive_read_free(ap.ar);
    invalidate_cache(&ap);
    csys_instream_close(&ap.in);
    csys_strset_free(&ap.created);
    for (size_t i = 0; i < ap.ndirs; i++) free(ap.dirs[i].path);
    free(ap.dirs);
    return rc;
}

/* Entry names are read as UTF-8 (pax path records are UTF-8), whatever the process locale. */
static int run_utf8(csys_apply *a, int extract) {
    locale_t old = csys_utf8_begin();
    int rc = run(a, extract);
    csys_utf8_end(old);
    return rc;
}

int csys_layer_apply(csys_apply *a) { return csys_load_archive(&a->error) != 0 ? -1 : run_utf8(a, 1); }
int csys_layer_scan(csys_apply *a) { return csys_load_archive(&a->error) != 0 ? -1 : run_utf8(a, 0); }
int csys_job_layer_apply(void *arg) { return csys_layer_apply(arg) == 0 ? 0 : 1; }
