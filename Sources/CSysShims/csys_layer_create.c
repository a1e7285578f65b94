/*
 * Writing a directory tree as a deterministic tar layer.
 *
 * Entries are emitted depth-first with the names of each directory sorted bytewise, so the
 * same tree always gives the same bytes: no atime/ctime, no user or group names, mtimes
 * (whole seconds) clamped to SOURCE_DATE_EPOCH when given, xattrs sorted by name, and a gzip
 * header without a timestamp. An overlay upper dir is converted on the way: 0:0 character
 * devices become ".wh.NAME" entries and opaque directories get a ".wh..wh..opq" entry.
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

typedef struct inode_key {
    dev_t dev;
    ino_t ino;
    char *path;
    uint32_t uid, gid; /* as written for the first link (owners translated) */
} inode_key;

typedef struct creator {
    csys_create *c;
    struct archive *ar;
    csys_outstream out;
    struct archive_entry *e;
    inode_key *links;
    size_t nlinks, caplinks;
    unsigned char *buf;
    size_t bufcap;
    int norecurse; /* a directory is one entry (csys_layer_create_changes) */
} creator;

static la_ssize_t ar_write(struct archive *ar, void *client, const void *buf, size_t len) {
    creator *cr = client;
    if (csys_outstream_write(&cr->out, buf, len) < 0) {
        archive_set_error(ar, EIO, "%s", cr->c->error.message);
        return -1;
    }
    return (la_ssize_t)len;
}

static int cmp_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int64_t clamp(creator *cr, int64_t t) {
    if (cr->c->clamp_mtime >= 0 && t > cr->c->clamp_mtime) return cr->c->clamp_mtime;
    return t;
}

static int decode_varint(const unsigned char *p, size_t n, size_t *i, uint32_t *v) {
    uint32_t r = 0;
    int shift = 0;
    while (*i < n && shift < 35) {
        unsigned char b = p[(*i)++];
        r |= (uint32_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) { *v = r; return 0; }
        shift += 7;
    }
    return -1;
}

/* the image owner kept by a rootless unpack without subordinate ids */
static void rootless_owner(int fd, const char *path_for_l, uint32_t *uid, uint32_t *gid) {
    unsigned char b[32];
    ssize_t n = fd >= 0 ? fgetxattr(fd, "user.rootlesscontainers", b, sizeof b)
                        : lgetxattr(path_for_l, "user.rootlesscontainers", b, sizeof b);
    if (n <= 0) return;
    uint32_t u = 0, g = 0;
    size_t i = 0;
    while (i < (size_t)n) {
        unsigned char tag = b[i++];
        uint32_t v;
        if (decode_varint(b, (size_t)n, &i, &v) < 0) return;
        if (tag == 0x08) u = v;
        else if (tag == 0x10) g = v;
        else return;
    }
    *uid = u;
    *gid = g;
}

static int add_xattrs(creator *cr, int fd, const char *procpath, const char *path) {
    char list[16384];
    ssize_t n = fd >= 0 ? flistxattr(fd, list, sizeof list) : llistxattr(procpath, list, sizeof list);
    if (n < 0) {
        if (errno == ENOTSUP || errno == EOPNOTSUPP || errno == EPERM) return 0;
        csys_set_error(&cr->c->error, errno, "xattr", "cannot list xattrs of %s: %s", path, strerror(errno));
        return -1;
    }
    if (n == 0) return 0;
    const char *names[512];
    size_t count = 0;
    for (char *p = list; p < list + n && count < 512; p += strlen(p) + 1) {
        if (strncmp(p, "trusted.overlay.", 16) == 0 || strncmp(p, "user.overlay.", 13) == 0 ||
            strncmp(p, "user.fuseoverlayfs.", 19) == 0 ||
            strcmp(p, "user.rootlesscontainers") == 0 || strncmp(p, "security.selinux", 16) == 0)
            continue;
        names[count++] = p;
    }
    qsort(names, count, sizeof names[0], cmp_names);
    for (size_t k = 0; k < count; k++) {
        unsigned char val[65536];
        ssize_t vn = fd >= 0 ? fgetxattr(fd, names[k], val, sizeof val) : lgetxattr(procpath, names[k], val, sizeof val);
        if (vn < 0) continue;
        archive_entry_xattr_add_entry(cr->e, names[k], val, (size_t)vn);
    }
    return 0;
}

static int write_header(creator *cr, const char *path) {
    int r = archive_write_header(cr->ar, cr->e);
    /* ARCHIVE_WARN: written, but a name could not be converted from the locale's charset (the
     * C locale cannot convert non-ASCII names): libarchive stored it as raw bytes under
     * "hdrcharset=BINARY", which keeps it exactly. */
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
        csys_set_error(&cr->c->error, archive_errno(cr->ar), "archive", "cannot write %s: %s", path,
                       archive_error_string(cr->ar));
        return -1;
    }
    cr->c->entries++;
    return 0;
}

static void owner(creator *cr, const struct stat *st, uint32_t *uid, uint32_t *gid) {
    *uid = st->st_uid;
    *gid = st->st_gid;
    if (cr->c->translate_owners) {
        *uid = st->st_uid == cr->c->host_uid ? 0 : 65534;
        *gid = st->st_gid == cr->c->host_gid ? 0 : 65534;
    }
}

static int is_opaque(int dfd) {
    char v[4];
    ssize_t n = fgetxattr(dfd, "trusted.overlay.opaque", v, sizeof v);
    if (n == 1 && v[0] == 'y') return 1;
    n = fgetxattr(dfd, "user.overlay.opaque", v, sizeof v);
    if (n == 1 && v[0] == 'y') return 1;
    n = fgetxattr(dfd, "user.fuseoverlayfs.opaque", v, sizeof v); /* fuse-overlayfs, rootless */
    if (n == 1 && v[0] == 'y') return 1;
    /* fuse-overlayfs where user xattrs are refused (NFS): only its marker file */
    return faccessat(dfd, ".wh..wh..opq", F_OK, AT_SYMLINK_NOFOLLOW) == 0;
}

static int walk(creator *cr, int dfd, const char *prefix, int depth);
static int create(csys_create *c);

/* Open `name` (a directory or regular file, not a symlink: `st` is its lstat) for reading.
 * Rootless without a user namespace (translate_owners) there is no CAP_DAC_READ_SEARCH: a
 * directory or file of the user's own without u+r (u+rx for a directory) is opened up for the
 * moment; *restore is then the mode to put back with fchmod once done, else (mode_t)-1. The
 * inode is pinned with O_PATH first, so a name swapped for a symlink is never followed. */
static int open_for_reading(creator *cr, int dfd, const char *name, const struct stat *st, int flags,
                            mode_t *restore) {
    *restore = (mode_t)-1;
    mode_t need = S_ISDIR(st->st_mode) ? 0500 : 0400;
    if (!cr->c->translate_owners || (st->st_mode & need) == need) return openat(dfd, name, flags);
    int pfd = openat(dfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (pfd < 0) return -1;
    struct stat now;
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", pfd);
    if (fstat(pfd, &now) == 0 && now.st_ino == st->st_ino && now.st_dev == st->st_dev &&
        chmod(proc, (st->st_mode & 07777) | need) == 0)
        *restore = st->st_mode & 07777;
    int fd = open(proc, (flags & ~O_NOFOLLOW) | O_CLOEXEC);
    int e = errno;
    if (fd < 0 && *restore != (mode_t)-1) {
        chmod(proc, *restore);
        *restore = (mode_t)-1;
    }
    close(pfd);
    errno = e;
    return fd;
}

static int emit(creator *cr, int dfd, const char *name, const char *path) {
    csys_create *c = cr->c;
    struct stat st;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        csys_set_error(&c->error, errno, "stat", "cannot stat %s: %s", path, strerror(errno));
        return -1;
    }
    uint32_t uid, gid;
    owner(cr, &st, &uid, &gid);
    archive_entry_clear(cr->e);
    archive_entry_set_mtime(cr->e, clamp(cr, st.st_mtim.tv_sec), 0);
    archive_entry_set_perm(cr->e, st.st_mode & 07777);

    int xattr_whiteout = 0;
    if (c->tree == CSYS_TREE_OVERLAY && S_ISREG(st.st_mode) && st.st_size == 0) {
        /* overlayfs's xattr whiteout (a store where mknod is refused) */
        char pp[CSYS_MAX_PATH];
        int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
        if (fd >= 0) {
            xattr_whiteout = fgetxattr(fd, "user.overlay.whiteout", pp, 1) >= 0 || fgetxattr(fd, "trusted.overlay.whiteout", pp, 1) >= 0;
            close(fd);
        }
    }
    if (c->tree == CSYS_TREE_OVERLAY && ((S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0)) || xattr_whiteout)) {
        char wh[CSYS_MAX_PATH];
        const char *slash = strrchr(path, '/');
        if (slash)
            snprintf(wh, sizeof wh, "%.*s/.wh.%s", (int)(slash - path), path, slash + 1);
        else
            snprintf(wh, sizeof wh, ".wh.%s", path);
        archive_entry_set_pathname(cr->e, wh);
        archive_entry_set_filetype(cr->e, AE_IFREG);
        archive_entry_set_perm(cr->e, 0);
        archive_entry_set_size(cr->e, 0);
        return write_header(cr, wh);
    }

    if (S_ISDIR(st.st_mode)) {
        mode_t restore;
        int fd = open_for_reading(cr, dfd, name, &st, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, &restore);
        if (fd < 0) {
            csys_set_error(&c->error, errno, "open", "cannot open %s: %s", path, strerror(errno));
            return -1;
        }
        if (c->translate_owners) rootless_owner(fd, NULL, &uid, &gid);
        char dpath[CSYS_MAX_PATH];
        snprintf(dpath, sizeof dpath, "%s/", path);
        archive_entry_set_pathname(cr->e, dpath);
        archive_entry_set_filetype(cr->e, AE_IFDIR);
        archive_entry_set_uid(cr->e, uid);
        archive_entry_set_gid(cr->e, gid);
        if (add_xattrs(cr, fd, NULL, path) < 0 || write_header(cr, dpath) < 0) {
            if (restore != (mode_t)-1) fchmod(fd, restore);
            close(fd);
            return -1;
        }
        if (c->tree == CSYS_TREE_OVERLAY && is_opaque(fd)) {
            char opq[CSYS_MAX_PATH];
            snprintf(opq, sizeof opq, "%s/.wh..wh..opq", path);
            archive_entry_clear(cr->e);
            archive_entry_set_pathname(cr->e, opq);
            archive_entry_set_filetype(cr->e, AE_IFREG);
            archive_entry_set_perm(cr->e, 0);
            archive_entry_set_size(cr->e, 0);
            archive_entry_set_mtime(cr->e, clamp(cr, st.st_mtim.tv_sec), 0);
            if (write_header(cr, opq) < 0) {
                if (restore != (mode_t)-1) fchmod(fd, restore);
                close(fd);
                return -1;
            }
        }
        int rc = cr->norecurse ? 0 : walk(cr, fd, path, 1);
        if (restore != (mode_t)-1) fchmod(fd, restore);
        close(fd);
        return rc;
    }

    archive_entry_set_pathname(cr->e, path);
    if (S_ISREG(st.st_mode) && st.st_nlink > 1) {
        for (size_t i = 0; i < cr->nlinks; i++) {
            if (cr->links[i].dev == st.st_dev && cr->links[i].ino == st.st_ino) {
                /* the owner of the inode, as its first entry has it: tools that chown the
                 * link after making it (docker, podman) would otherwise give it another */
                archive_entry_set_filetype(cr->e, AE_IFREG);
                archive_entry_set_uid(cr->e, cr->links[i].uid);
                archive_entry_set_gid(cr->e, cr->links[i].gid);
                archive_entry_set_hardlink(cr->e, cr->links[i].path);
                archive_entry_set_size(cr->e, 0);
                return write_header(cr, path);
            }
        }
        if (cr->nlinks == cr->caplinks) {
            size_t ncap = cr->caplinks ? cr->caplinks * 2 : 64;
            inode_key *nl = realloc(cr->links, ncap * sizeof *nl);
            if (!nl) { csys_set_error(&c->error, ENOMEM, "memory", "out of memory"); return -1; }
            cr->links = nl;
            cr->caplinks = ncap;
        }
        cr->links[cr->nlinks].dev = st.st_dev;
        cr->links[cr->nlinks].ino = st.st_ino;
        cr->links[cr->nlinks].path = strdup(path);
        cr->links[cr->nlinks].uid = uid;
        cr->links[cr->nlinks].gid = gid;
        cr->nlinks++;
    }

    if (S_ISREG(st.st_mode)) {
        mode_t restore;
        int fd = open_for_reading(cr, dfd, name, &st, O_RDONLY | O_NOFOLLOW | O_CLOEXEC, &restore);
        if (fd < 0) {
            csys_set_error(&c->error, errno, "open", "cannot read %s: %s", path, strerror(errno));
            return -1;
        }
        if (restore != (mode_t)-1) fchmod(fd, restore); /* reading goes on through the fd */
        if (c->translate_owners) rootless_owner(fd, NULL, &uid, &gid);
        if (st.st_nlink > 1 && cr->nlinks && cr->links[cr->nlinks - 1].ino == st.st_ino &&
            cr->links[cr->nlinks - 1].dev == st.st_dev) {
            cr->links[cr->nlinks - 1].uid = uid;
            cr->links[cr->nlinks - 1].gid = gid;
        }
        archive_entry_set_filetype(cr->e, AE_IFREG);
        archive_entry_set_uid(cr->e, uid);
        archive_entry_set_gid(cr->e, gid);
        archive_entry_set_size(cr->e, st.st_size);
        if (add_xattrs(cr, fd, NULL, path) < 0 || write_header(cr, path) < 0) { close(fd); return -1; }
        int64_t left = st.st_size;
        while (left > 0) {
            ssize_t n = read(fd, cr->buf, cr->bufcap);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                csys_set_error(&c->error, n < 0 ? errno : EIO, "read", "%s changed size while being archived", path);
                close(fd);
                return -1;
            }
            if ((int64_t)n > left) n = (ssize_t)left;
            if (archive_write_data(cr->ar, cr->buf, (size_t)n) != n) {
                csys_set_error(&c->error, archive_errno(cr->ar), "archive", "cannot write %s: %s", path,
                               archive_error_string(cr->ar));
                close(fd);
                return -1;
            }
            left -= n;
        }
        close(fd);
        return 0;
    }

    archive_entry_set_uid(cr->e, uid);
    archive_entry_set_gid(cr->e, gid);
    if (S_ISLNK(st.st_mode)) {
        char target[CSYS_MAX_PATH];
        ssize_t n = readlinkat(dfd, name, target, sizeof target - 1);
        if (n < 0) {
            csys_set_error(&c->error, errno, "readlink", "cannot read link %s: %s", path, strerror(errno));
            return -1;
        }
        target[n] = 0;
        archive_entry_set_filetype(cr->e, AE_IFLNK);
        archive_entry_set_symlink(cr->e, target);
        archive_entry_set_perm(cr->e, 0777);
        return write_header(cr, path);
    }
    if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) || S_ISFIFO(st.st_mode)) {
        archive_entry_set_filetype(cr->e, st.st_mode & S_IFMT);
        if (!S_ISFIFO(st.st_mode)) archive_entry_set_rdev(cr->e, st.st_rdev);
        return write_header(cr, path);
    }
    return 0; /* sockets are not archived */
}

static int walk(creator *cr, int dfd, const char *prefix, int depth) {
    if (depth > 4096) {
        csys_set_error(&cr->c->error, ELOOP, "walk", "directory tree too deep at %s", prefix);
        return -1;
    }
    int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        csys_set_error(&cr->c->error, errno, "open", "cannot read directory %s: %s", *prefix ? prefix : "/", strerror(errno));
        return -1;
    }
    DIR *d = fdopendir(fd);
    if (!d) { close(fd); return -1; }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        /* fuse-overlayfs marks an opaque upper dir with these besides its xattr; the
         * directory's own entry says it (is_opaque) */
        if (cr->c->tree == CSYS_TREE_OVERLAY && (!strcmp(de->d_name, ".wh..wh..opq") || !strcmp(de->d_name, ".wh..opq")))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **nn = realloc(names, cap * sizeof *nn);
            if (!nn) break;
            names = nn;
        }
        names[n++] = strdup(de->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_names);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        if (rc == 0) {
            char path[CSYS_MAX_PATH];
            if ((size_t)snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "/" : "", names[i]) >= sizeof path) {
                csys_set_error(&cr->c->error, ENAMETOOLONG, "walk", "path too long under %s", prefix);
                rc = -1;
            } else if (emit(cr, dfd, names[i], path) < 0) {
                rc = -1;
            }
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

int csys_layer_create(csys_create *c) {
    if (csys_load_archive(&c->error) != 0) return -1;
    /* names are written as UTF-8 pax records, as docker and buildkit write them (in the C
     * locale libarchive would mark non-ASCII names hdrcharset=BINARY) */
    locale_t old = csys_utf8_begin();
    int rc = create(c);
    csys_utf8_end(old);
    return rc;
}

static int create_with(csys_create *c, const csys_change *changes, size_t nchanges, int listed);

static int create(csys_create *c) { return create_with(c, NULL, 0, 0); }

/* One change of a list: a whiteout entry, or the entry at `path` (relative to root_fd). */
static int emit_change(creator *cr, const csys_change *ch) {
    if (ch->whiteout) {
        char wh[CSYS_MAX_PATH];
        const char *slash = strrchr(ch->path, '/');
        if (slash)
            snprintf(wh, sizeof wh, "%.*s/.wh.%s", (int)(slash - ch->path), ch->path, slash + 1);
        else
            snprintf(wh, sizeof wh, ".wh.%s", ch->path);
        archive_entry_clear(cr->e);
        archive_entry_set_pathname(cr->e, wh);
        archive_entry_set_filetype(cr->e, AE_IFREG);
        archive_entry_set_perm(cr->e, 0);
        archive_entry_set_size(cr->e, 0);
        archive_entry_set_mtime(cr->e, cr->c->clamp_mtime >= 0 ? cr->c->clamp_mtime : 0, 0);
        return write_header(cr, wh);
    }
    /* the parent, resolved beneath the root with no symlink followed */
    char parent[CSYS_MAX_PATH];
    const char *slash = strrchr(ch->path, '/');
    const char *name = slash ? slash + 1 : ch->path;
    int dfd = cr->c->root_fd, own = 0;
    if (slash) {
        snprintf(parent, sizeof parent, "%.*s", (int)(slash - ch->path), ch->path);
        dfd = csys_openat2_beneath(cr->c->root_fd, parent, O_PATH | O_DIRECTORY);
        if (dfd < 0) {
            csys_set_error(&cr->c->error, errno, "open", "cannot open %s: %s", parent, strerror(errno));
            return -1;
        }
        own = 1;
    }
    int rc = emit(cr, dfd, name, ch->path);
    if (own) close(dfd);
    return rc;
}

int csys_layer_create_changes(csys_create *c, const csys_change *changes, size_t n) {
    if (csys_load_archive(&c->error) != 0) return -1;
    locale_t old = csys_utf8_begin();
    /* an empty list (nothing changed) is an empty layer, not the whole tree */
    int rc = create_with(c, changes, n, 1);
    csys_utf8_end(old);
    return rc;
}

static int create_with(csys_create *c, const csys_change *changes, size_t nchanges, int listed) {
    creator cr;
    memset(&cr, 0, sizeof cr);
    cr.c = c;
    int rc = -1;
    cr.bufcap = 256 * 1024;
    cr.buf = malloc(cr.bufcap);
    cr.e = archive_entry_new();
    if (!cr.buf || !cr.e) { csys_set_error(&c->error, ENOMEM, "memory", "out of memory"); goto out; }
    if (csys_outstream_open(&cr.out, c->out_fd, c->compression, c->level, &c->error) < 0) goto out;
    cr.out.name = c->out_name;
    cr.ar = archive_write_new();
    archive_write_set_format_pax_restricted(cr.ar);
    archive_write_set_bytes_per_block(cr.ar, 10240);
    archive_write_set_bytes_in_last_block(cr.ar, 1);
    if (archive_write_open(cr.ar, &cr, NULL, ar_write, NULL) != ARCHIVE_OK) {
        csys_set_error(&c->error, 0, "archive", "%s", archive_error_string(cr.ar));
        goto out;
    }
    if (listed) {
        cr.norecurse = 1;
        for (size_t i = 0; i < nchanges; i++)
            if (emit_change(&cr, &changes[i]) < 0) goto out;
    } else if (walk(&cr, c->root_fd, "", 0) < 0) {
        goto out;
    }
    if (archive_write_close(cr.ar) != ARCHIVE_OK) {
        csys_set_error(&c->error, 0, "archive", "%s", archive_error_string(cr.ar));
        goto out;
    }
    if (csys_outstream_close(&cr.out, c->digest, c->diff_id) < 0) goto out;
    c->size = cr.out.out_total;
    c->tar_size = cr.out.in_total;
    rc = 0;
out:
    if (cr.ar) archive_write_free(cr.ar);
    if (cr.e) archive_entry_free(cr.e);
    csys_outstream_free(&cr.out);
    for (size_t i = 0; i < cr.nlinks; i++) free(cr.links[i].path);
    free(cr.links);
    free(cr.buf);
    return rc;
}

int csys_job_layer_create(void *arg) { return csys_layer_create(arg) == 0 ? 0 : 1; }

