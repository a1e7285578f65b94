/*
 * What a command changed in a directory tree, without an overlay: a snapshot of every
 * entry's metadata before and after, and the difference as a layer's change list. The
 * chroot isolation level of `ctr build` runs a RUN step in a real tree and makes its layer
 * from this. A changed ctime catches every change of content, mode, owner or xattrs (a
 * write that restores the mtime still moves the ctime).
 */
#include "csys_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct snap_entry {
    char *path;
    mode_t mode;
    uid_t uid;
    gid_t gid;
    off_t size;
    struct timespec mtim, ctim;
    ino_t ino;
    dev_t rdev;
} snap_entry;

struct csys_snapshot {
    snap_entry *e;
    size_t n, cap;
};

/* Layer order: a directory right before its contents ('/' sorts lowest). */
static int path_cmp(const char *a, const char *b) {
    for (;; a++, b++) {
        unsigned char x = (unsigned char)*a, y = (unsigned char)*b;
        if (x == y) { if (!x) return 0; continue; }
        if (!x) return -1;
        if (!y) return 1;
        if (x == '/') return -1;
        if (y == '/') return 1;
        return x < y ? -1 : 1;
    }
}

static int entry_cmp(const void *a, const void *b) {
    return path_cmp(((const snap_entry *)a)->path, ((const snap_entry *)b)->path);
}

static int skipped(const char *path, const char *const *skip, int nskip) {
    for (int i = 0; i < nskip; i++) if (!strcmp(path, skip[i])) return 1;
    return 0;
}

static int add(csys_snapshot *s, const char *path, const struct stat *st) {
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 1024;
        snap_entry *ne = realloc(s->e, nc * sizeof *ne);
        if (!ne) return -1;
        s->e = ne;
        s->cap = nc;
    }
    snap_entry *e = &s->e[s->n];
    e->path = strdup(path);
    if (!e->path) return -1;
    e->mode = st->st_mode;
    e->uid = st->st_uid;
    e->gid = st->st_gid;
    e->size = st->st_size;
    e->mtim = st->st_mtim;
    e->ctim = st->st_ctim;
    e->ino = st->st_ino;
    e->rdev = st->st_rdev;
    s->n++;
    return 0;
}

static int walk(csys_snapshot *s, int dfd, const char *prefix, const char *const *skip, int nskip, int depth, csys_error *err) {
    if (depth > 4096) {
        csys_set_error(err, ELOOP, "snapshot", "directory tree too deep at %s", prefix);
        return -1;
    }
    int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        csys_set_error(err, errno, "snapshot", "cannot read %s: %s", *prefix ? prefix : "/", strerror(errno));
        return -1;
    }
    DIR *d = fdopendir(fd);
    if (!d) { close(fd); return -1; }
    struct dirent *de;
    int rc = 0;
    while (rc == 0 && (de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        char path[CSYS_MAX_PATH];
        if ((size_t)snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "/" : "", de->d_name) >= sizeof path) {
            csys_set_error(err, ENAMETOOLONG, "snapshot", "path too long under %s", prefix);
            rc = -1;
            break;
        }
        if (skipped(path, skip, nskip)) continue;
        struct stat st;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            if (errno == ENOENT) continue;
            csys_set_error(err, errno, "snapshot", "cannot stat %s: %s", path, strerror(errno));
            rc = -1;
            break;
        }
        if (add(s, path, &st) < 0) {
            csys_set_error(err, ENOMEM, "snapshot", "out of memory");
            rc = -1;
            break;
        }
        if (S_ISDIR(st.st_mode)) {
            int sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0 && errno == EACCES) {
                /* a 0 mode directory (root reads through it) */
                fchmodat(dirfd(d), de->d_name, st.st_mode | 0500, 0);
                sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                fchmodat(dirfd(d), de->d_name, st.st_mode & 07777, 0);
            }
            if (sub < 0) {
                csys_set_error(err, errno, "snapshot", "cannot open %s: %s", path, strerror(errno));
                rc = -1;
                break;
            }
            rc = walk(s, sub, path, skip, nskip, depth + 1, err);
            close(sub);
        }
    }
    closedir(d);
    return rc;
}

csys_snapshot *csys_snapshot_take(int root_fd, const char *const *skip, int nskip, csys_error *err) {
    csys_snapshot *s = calloc(1, sizeof *s);
    if (!s) {
        csys_set_error(err, ENOMEM, "snapshot", "out of memory");
        return NULL;
    }
    if (walk(s, root_fd, "", skip, nskip, 0, err) < 0) {
        csys_snapshot_free(s);
        return NULL;
    }
    qsort(s->e, s->n, sizeof *s->e, entry_cmp);
    return s;
}

void csys_snapshot_free(csys_snapshot *s) {
    if (!s) return;
    for (size_t i = 0; i < s->n; i++) free(s->e[i].path);
    free(s->e);
    free(s);
}

uint64_t csys_snapshot_count(const csys_snapshot *s) { return s ? s->n : 0; }

static int ts_eq(struct timespec a, struct timespec b) { return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec; }

static int changed(const snap_entry *a, const snap_entry *b) {
    if ((a->mode & S_IFMT) != (b->mode & S_IFMT)) return 1;
    if (a->mode != b->mode || a->uid != b->uid || a->gid != b->gid) return 1;
    if (!ts_eq(a->ctim, b->ctim) || !ts_eq(a->mtim, b->mtim)) return 1;
    if (!S_ISDIR(a->mode) && a->size != b->size) return 1;
    if ((S_ISCHR(a->mode) || S_ISBLK(a->mode)) && a->rdev != b->rdev) return 1;
    /* the same metadata on another inode: replaced (a rename over it) */
    return a->ino != b->ino;
}

static int is_under(const char *path, const char *dir) {
    size_t n = strlen(dir);
    return !strncmp(path, dir, n) && path[n] == '/';
}

typedef struct list {
    csys_change *c;
    long n, cap;
} list;

static int push(list *l, const char *path, int whiteout) {
    if (l->n == l->cap) {
        long nc = l->cap ? l->cap * 2 : 64;
        csys_change *nn = realloc(l->c, (size_t)nc * sizeof *nn);
        if (!nn) return -1;
        l->c = nn;
        l->cap = nc;
    }
    l->c[l->n].path = strdup(path);
    l->c[l->n].whiteout = whiteout;
    if (!l->c[l->n].path) return -1;
    l->n++;
    return 0;
}

/* The directories the layer has on the way to the current entry: entries come in layer
 * order (a directory before its contents), so those on the way form a stack. */
typedef struct chain {
    char *dir[512];
    int depth;
} chain;

static void chain_trim(chain *k, const char *path) {
    while (k->depth > 0 && !is_under(path, k->dir[k->depth - 1])) free(k->dir[--k->depth]);
}

static int chain_push(chain *k, const char *path) {
    if (k->depth == 512) return 0; /* deeper than this: parents may repeat, never go missing */
    k->dir[k->depth] = strdup(path);
    if (!k->dir[k->depth]) return -1;
    k->depth++;
    return 0;
}

/* The directories above `path` the layer does not have yet, then the entry itself. */
static int push_entry(list *l, chain *k, const char *path, int whiteout, int is_dir) {
    chain_trim(k, path);
    char buf[CSYS_MAX_PATH];
    const char *p = path;
    while ((p = strchr(p, '/'))) {
        size_t n = (size_t)(p - path);
        memcpy(buf, path, n);
        buf[n] = 0;
        p++;
        int have = 0;
        for (int d = 0; d < k->depth; d++) if (!strcmp(k->dir[d], buf)) { have = 1; break; }
        if (have) continue;
        if (push(l, buf, 0) < 0 || chain_push(k, buf) < 0) return -1;
    }
    if (push(l, path, whiteout) < 0) return -1;
    if (is_dir && !whiteout && chain_push(k, path) < 0) return -1;
    return 0;
}

long csys_snapshot_diff(const csys_snapshot *before, const csys_snapshot *after, csys_change **out, csys_error *err) {
    list l = {0};
    chain k = {{0}, 0};
    size_t i = 0, j = 0;
    char gone[CSYS_MAX_PATH] = ""; /* the last whited-out (or retyped) path: its old contents need nothing */
    while (i < before->n || j < after->n) {
        int c = i >= before->n ? 1 : j >= after->n ? -1 : path_cmp(before->e[i].path, after->e[j].path);
        if (c < 0) {
            const char *p = before->e[i].path;
            if (!(*gone && is_under(p, gone))) {
                if (push_entry(&l, &k, p, 1, 0) < 0) goto oom;
                snprintf(gone, sizeof gone, "%s", p);
            }
            i++;
            continue;
        }
        const snap_entry *emit = NULL;
        if (c > 0) {
            emit = &after->e[j];
            j++;
        } else {
            const snap_entry *a = &before->e[i], *b = &after->e[j];
            if (changed(a, b)) {
                emit = b;
                /* a directory that became something else: what it held is gone with it */
                if (S_ISDIR(a->mode) && !S_ISDIR(b->mode)) snprintf(gone, sizeof gone, "%s", b->path);
            }
            i++;
            j++;
        }
        if (emit && push_entry(&l, &k, emit->path, 0, S_ISDIR(emit->mode)) < 0) goto oom;
    }
    while (k.depth > 0) free(k.dir[--k.depth]);
    *out = l.c;
    return l.n;
oom:
    while (k.depth > 0) free(k.dir[--k.depth]);
    csys_changes_free(l.c, l.n);
    csys_set_error(err, ENOMEM, "snapshot", "out of memory");
    return -1;
}

void csys_changes_free(csys_change *changes, long n) {
    if (!changes) return;
    for (long i = 0; i < n; i++) free((void *)changes[i].path);
    free(changes);
}

/* ---------- a snapshot across processes ----------
 * Where the tree belongs to a user namespace (a rootless user with subordinate ids), it is
 * read in that namespace: a job takes the "before" snapshot and writes it to a file, another
 * takes the "after" one, reads the first back and writes the layer. */

typedef struct snap_record {
    uint32_t mode, uid, gid, pathlen;
    int64_t size, mtim_sec, mtim_nsec, ctim_sec, ctim_nsec;
    uint64_t ino, rdev;
} snap_record;

static int write_all(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) { if (errno == EINTR) continue; return -1; }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int read_all(FILE *f, void *buf, size_t n) { return fread(buf, 1, n, f) == n ? 0 : -1; }

static int snapshot_save(const csys_snapshot *s, int fd, csys_error *err) {
    uint64_t n = s->n;
    if (write_all(fd, "ctrsnap1", 8) < 0 || write_all(fd, &n, sizeof n) < 0) goto fail;
    for (size_t i = 0; i < s->n; i++) {
        const snap_entry *e = &s->e[i];
        snap_record r = {
            .mode = e->mode, .uid = e->uid, .gid = e->gid, .pathlen = (uint32_t)strlen(e->path),
            .size = e->size, .mtim_sec = e->mtim.tv_sec, .mtim_nsec = e->mtim.tv_nsec,
            .ctim_sec = e->ctim.tv_sec, .ctim_nsec = e->ctim.tv_nsec, .ino = e->ino, .rdev = e->rdev,
        };
        if (write_all(fd, &r, sizeof r) < 0 || write_all(fd, e->path, r.pathlen) < 0) goto fail;
    }
    return 0;
fail:
    csys_set_error(err, errno, "snapshot", "cannot save the tree's snapshot: %s", strerror(errno));
    return -1;
}

static csys_snapshot *snapshot_load(int fd, csys_error *err) {
    int dup_fd = dup(fd);
    FILE *f = dup_fd >= 0 ? fdopen(dup_fd, "r") : NULL;
    if (!f) {
        if (dup_fd >= 0) close(dup_fd);
        csys_set_error(err, errno, "snapshot", "cannot read the tree's snapshot: %s", strerror(errno));
        return NULL;
    }
    csys_snapshot *s = calloc(1, sizeof *s);
    char magic[8];
    uint64_t n = 0;
    if (!s || fseek(f, 0, SEEK_SET) != 0 || read_all(f, magic, 8) < 0 || memcmp(magic, "ctrsnap1", 8) ||
        read_all(f, &n, sizeof n) < 0)
        goto bad;
    s->e = calloc(n ? n : 1, sizeof *s->e);
    if (!s->e) goto bad;
    s->cap = n;
    for (uint64_t i = 0; i < n; i++) {
        snap_record r;
        if (read_all(f, &r, sizeof r) < 0 || r.pathlen >= CSYS_MAX_PATH) goto bad;
        snap_entry *e = &s->e[s->n];
        e->path = malloc(r.pathlen + 1);
        if (!e->path || read_all(f, e->path, r.pathlen) < 0) { free(e->path); goto bad; }
        e->path[r.pathlen] = 0;
        e->mode = r.mode;
        e->uid = r.uid;
        e->gid = r.gid;
        e->size = r.size;
        e->mtim.tv_sec = r.mtim_sec;
        e->mtim.tv_nsec = r.mtim_nsec;
        e->ctim.tv_sec = r.ctim_sec;
        e->ctim.tv_nsec = r.ctim_nsec;
        e->ino = r.ino;
        e->rdev = r.rdev;
        s->n++;
    }
    fclose(f);
    return s;
bad:
    fclose(f);
    csys_snapshot_free(s);
    csys_set_error(err, EINVAL, "snapshot", "the tree's snapshot is unreadable");
    return NULL;
}

int csys_snapshot_job_save(void *arg) {
    csys_snapshot_job *j = arg;
    csys_snapshot *s = csys_snapshot_take(j->root_fd, j->skip, j->nskip, &j->error);
    if (!s) return 1;
    int rc = snapshot_save(s, j->snap_fd, &j->error);
    j->entries = (long)s->n;
    csys_snapshot_free(s);
    return rc == 0 ? 0 : 1;
}

int csys_snapshot_job_layer(void *arg) {
    csys_snapshot_job *j = arg;
    csys_snapshot *before = snapshot_load(j->snap_fd, &j->error);
    if (!before) return 1;
    csys_snapshot *after = csys_snapshot_take(j->root_fd, j->skip, j->nskip, &j->error);
    if (!after) { csys_snapshot_free(before); return 1; }
    csys_change *list = NULL;
    long n = csys_snapshot_diff(before, after, &list, &j->error);
    csys_snapshot_free(before);
    csys_snapshot_free(after);
    if (n < 0) return 1;
    j->entries = n;
    int rc = csys_layer_create_changes(&j->create, list, (size_t)n);
    csys_changes_free(list, n);
    if (rc != 0) { j->error = j->create.error; return 1; }
    return 0;
}

int csys_snapshot_file(void) { return memfd_create("ctr-snapshot", MFD_CLOEXEC); }
