/* Plain tar archives of files: the container for oci-archive and docker-archive. */
#include "csys_internal.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct csys_tar_writer {
    struct archive *ar;
    struct archive_entry *e;
    int fd;
    unsigned char *buf;
    size_t cap;
    csys_error err;
};

void csys_free(void *p) { free(p); }

static la_ssize_t tw_write(struct archive *ar, void *client, const void *buf, size_t len) {
    csys_tar_writer *w = client;
    if (csys_write_all(w->fd, buf, len) < 0) {
        csys_set_error(&w->err, errno, "write", "cannot write the archive: %s", strerror(errno));
        archive_set_error(ar, errno, "%s", w->err.message);
        return -1;
    }
    return (la_ssize_t)len;
}

csys_tar_writer *csys_tar_writer_open(int fd, csys_error *err) {
    if (csys_load_archive(err) != 0) return NULL;
    csys_tar_writer *w = calloc(1, sizeof *w);
    if (!w) { csys_set_error(err, ENOMEM, "memory", "out of memory"); return NULL; }
    w->fd = fd;
    w->cap = 1 << 20;
    w->buf = malloc(w->cap);
    w->ar = archive_write_new();
    w->e = archive_entry_new();
    if (!w->buf || !w->ar || !w->e) {
        csys_set_error(err, ENOMEM, "memory", "out of memory");
        csys_tar_writer_close(w, 0);
        return NULL;
    }
    archive_write_set_format_pax_restricted(w->ar);
    archive_write_set_bytes_per_block(w->ar, 10240);
    archive_write_set_bytes_in_last_block(w->ar, 1);
    if (archive_write_open(w->ar, w, NULL, tw_write, NULL) != ARCHIVE_OK) {
        csys_set_error(err, 0, "archive", "%s", archive_error_string(w->ar));
        csys_tar_writer_close(w, 0);
        return NULL;
    }
    return w;
}

const csys_error *csys_tar_writer_error(csys_tar_writer *w) { return &w->err; }

/* The plain entries of archives ctr writes (0755 dirs, 0644 files, owner 0): one entry each. */
int csys_tar_add_dir(csys_tar_writer *w, const char *name, int64_t mtime) {
    csys_tar_entry e = {.name = name, .type = 'd', .mode = 0755, .mtime = mtime};
    return csys_tar_add_entry(w, &e, -1);
}

int csys_tar_add_bytes(csys_tar_writer *w, const char *name, const void *data, size_t len, int64_t mtime) {
    static const char none = 0;
    csys_tar_entry e = {.name = name, .type = 'f', .mode = 0644, .mtime = mtime, .size = len, .data = data ? data : &none};
    return csys_tar_add_entry(w, &e, -1);
}

int csys_tar_add_fd(csys_tar_writer *w, const char *name, int src_fd, uint64_t size, int64_t mtime) {
    csys_tar_entry e = {.name = name, .type = 'f', .mode = 0644, .mtime = mtime, .size = size};
    return csys_tar_add_entry(w, &e, src_fd);
}

int csys_tar_writer_close(csys_tar_writer *w, int finish) {
    if (!w) return 0;
    int rc = 0;
    if (w->ar) {
        if (finish && archive_write_close(w->ar) != ARCHIVE_OK) {
            csys_set_error(&w->err, archive_errno(w->ar), "archive", "%s", archive_error_string(w->ar));
            rc = -1;
        }
        if (!finish) archive_write_fail(w->ar);
        archive_write_free(w->ar);
    }
    if (w->e) archive_entry_free(w->e);
    free(w->buf);
    free(w);
    return rc;
}

/* ---------------- extraction of plain files ---------------- */

typedef struct tx {
    csys_instream in;
    csys_error *err;
} tx;

static la_ssize_t tx_read(struct archive *ar, void *client, const void **buf) {
    tx *t = client;
    ssize_t n = csys_instream_read(&t->in, buf);
    if (n < 0) {
        archive_set_error(ar, EIO, "%s", t->err->message);
        return -1;
    }
    return n;
}

static int append(char **s, size_t *len, size_t *cap, const char *line) {
    size_t n = strlen(line);
    if (*len + n + 1 > *cap) {
        size_t nc = (*cap ? *cap : 4096);
        while (*len + n + 1 > nc) nc *= 2;
        char *ns = realloc(*s, nc);
        if (!ns) return -1;
        *s = ns;
        *cap = nc;
    }
    memcpy(*s + *len, line, n + 1);
    *len += n;
    return 0;
}

static int extract_files(int in_fd, int dest_dirfd, char **listing, csys_error *err);

int csys_tar_extract_files(int in_fd, int dest_dirfd, char **listing, csys_error *err) {
    locale_t old = csys_utf8_begin();
    int rc = extract_files(in_fd, dest_dirfd, listing, err);
    csys_utf8_end(old);
    return rc;
}

static int extract_files(int in_fd, int dest_dirfd, char **listing, csys_error *err) {
    if (csys_load_archive(err) != 0) return -1;
    tx t;
    memset(&t, 0, sizeof t);
    t.err = err;
    struct archive *ar = NULL;
    char *out = NULL;
    size_t olen = 0, ocap = 0;
    unsigned long n = 0;
    int rc = -1;
    csys_sha256 *h = csys_sha256_new();
    if (!h) { csys_set_error(err, ENOMEM, "memory", "out of memory"); goto done; }
    if (csys_instream_open(&t.in, in_fd, err) < 0) goto done;
    ar = archive_read_new();
    archive_read_support_format_tar(ar);
    if (archive_read_open(ar, &t, NULL, tx_read, NULL) != ARCHIVE_OK) {
        csys_set_error(err, 0, "archive", "not a tar archive: %s", archive_error_string(ar));
        goto done;
    }
    if (append(&out, &olen, &ocap, "") < 0) goto oom;
    struct archive_entry *e;
    for (;;) {
        int r = archive_read_next_header(ar, &e);
        if (r == ARCHIVE_EOF) break;
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
            csys_set_error(err, 0, "archive", "corrupt archive: %s", archive_error_string(ar));
            goto done;
        }
        const char *raw = archive_entry_pathname(e);
        char clean[CSYS_MAX_PATH];
        if (!raw || csys_clean_path(raw, clean, sizeof clean) < 0) continue; /* "./" */
        mode_t type = archive_entry_filetype(e);
        if (type == AE_IFDIR) continue;
        if (type != AE_IFREG || archive_entry_hardlink(e)) {
            /* symlinks appear in old docker-archives (layer dirs); they are not needed */
            if (type == AE_IFLNK) continue;
            csys_set_error(err, EINVAL, "archive", "unexpected entry %s in an image archive", clean);
            goto done;
        }
        if (strpbrk(clean, "\t\n")) {
            csys_set_error(err, EINVAL, "archive", "entry name with a tab or newline in an image archive");
            goto done;
        }
        char tmp[32];
        snprintf(tmp, sizeof tmp, "f%lu", n++);
        int fd = openat(dest_dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0) {
            csys_set_error(err, errno, "create", "cannot write %s: %s", clean, strerror(errno));
            goto done;
        }
        csys_sha256_reset(h);
        uint64_t size = 0;
        const void *buf;
        size_t len;
        la_int64_t off;
        for (;;) {
            if (csys_stop_signal()) {
                csys_set_error(err, EINTR, "archive", "interrupted");
                close(fd);
                goto done;
            }
            int rr = archive_read_data_block(ar, &buf, &len, &off);
            if (rr == ARCHIVE_EOF) break;
            if (rr != ARCHIVE_OK && rr != ARCHIVE_WARN) {
                csys_set_error(err, 0, "archive", "reading %s: %s", clean, archive_error_string(ar));
                close(fd);
                goto done;
            }
            if ((uint64_t)off != size) {
                /* sparse hole: materialise zeros so the hash covers them */
                static const unsigned char zeros[65536];
                while (size < (uint64_t)off) {
                    size_t z = (uint64_t)off - size < sizeof zeros ? (size_t)((uint64_t)off - size) : sizeof zeros;
                    csys_sha256_update(h, zeros, z);
                    if (csys_write_all(fd, zeros, z) < 0) goto werr;
                    size += z;
                }
            }
            csys_sha256_update(h, buf, len);
            if (csys_write_all(fd, buf, len) < 0) goto werr;
            size += len;
            continue;
        werr:
            csys_set_error(err, errno, "write", "cannot write %s: %s", clean, strerror(errno));
            close(fd);
            goto done;
        }
        close(fd);
        unsigned char d[32];
        csys_sha256_final(h, d);
        char line[CSYS_MAX_PATH + 256];
        int k = snprintf(line, sizeof line, "%s\t", tmp);
        for (int i = 0; i < 32; i++) k += snprintf(line + k, sizeof line - (size_t)k, "%02x", d[i]);
        snprintf(line + k, sizeof line - (size_t)k, "\t%llu\t%s\n", (unsigned long long)size, clean);
        if (append(&out, &olen, &ocap, line) < 0) goto oom;
    }
    *listing = out;
    out = NULL;
    rc = 0;
    goto done;
oom:
    csys_set_error(err, ENOMEM, "memory", "out of memory");
done:
    if (ar) archive_read_free(ar);
    csys_instream_close(&t.in);
    csys_sha256_free(h);
    free(out);
    return rc;
}

static int add_entry(csys_tar_writer *w, const csys_tar_entry *te, int src_fd);

/* names are written as UTF-8 pax records (as in csys_layer_create), whatever the locale */
int csys_tar_add_entry(csys_tar_writer *w, const csys_tar_entry *te, int src_fd) {
    locale_t old = csys_utf8_begin();
    int rc = add_entry(w, te, src_fd);
    csys_utf8_end(old);
    return rc;
}

static int add_entry(csys_tar_writer *w, const csys_tar_entry *te, int src_fd) {
    archive_entry_clear(w->e);
    archive_entry_set_pathname(w->e, te->name);
    archive_entry_set_perm(w->e, te->mode & 07777);
    archive_entry_set_uid(w->e, te->uid);
    archive_entry_set_gid(w->e, te->gid);
    archive_entry_set_mtime(w->e, te->mtime, 0);
    switch (te->type) {
    case 'd': archive_entry_set_filetype(w->e, AE_IFDIR); archive_entry_set_size(w->e, 0); break;
    case 'l': archive_entry_set_filetype(w->e, AE_IFLNK); archive_entry_set_size(w->e, 0);
              archive_entry_set_symlink(w->e, te->linkname); break;
    case 'h': archive_entry_set_filetype(w->e, AE_IFREG); archive_entry_set_size(w->e, 0);
              archive_entry_set_hardlink(w->e, te->linkname); break;
    default:  archive_entry_set_filetype(w->e, AE_IFREG); archive_entry_set_size(w->e, (la_int64_t)te->size); break;
    }
    if (archive_write_header(w->ar, w->e) != ARCHIVE_OK) {
        csys_set_error(&w->err, archive_errno(w->ar), "archive", "cannot add %s: %s", te->name, archive_error_string(w->ar));
        return -1;
    }
    if (te->type != 'f') return 0;
    if (te->data) {
        if (te->size && archive_write_data(w->ar, te->data, (size_t)te->size) != (la_ssize_t)te->size) {
            csys_set_error(&w->err, archive_errno(w->ar), "archive", "cannot add %s: %s", te->name, archive_error_string(w->ar));
            return -1;
        }
        return 0;
    }
    uint64_t left = te->size;
    while (left) {
        size_t want = left < w->cap ? (size_t)left : w->cap;
        ssize_t n = read(src_fd, w->buf, want);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            csys_set_error(&w->err, n < 0 ? errno : EIO, "read", "%s: short read (%s)", te->name,
                           n < 0 ? strerror(errno) : "the file is shorter than expected");
            return -1;
        }
        if (archive_write_data(w->ar, w->buf, (size_t)n) != n) {
            csys_set_error(&w->err, archive_errno(w->ar), "archive", "cannot add %s: %s", te->name, archive_error_string(w->ar));
            return -1;
        }
        left -= (uint64_t)n;
    }
    return 0;
}

/* ---------------------------------------------------------------- xz and bzip2 */

int csys_xz_bzip2_kind(int in_fd) {
    unsigned char magic[6] = {0};
    ssize_t got;
    do got = pread(in_fd, magic, sizeof magic, 0); while (got < 0 && errno == EINTR);
    if (got < 0) return -1;
    if (got == 6 && memcmp(magic, "\xfd" "7zXZ\0", 6) == 0) return CSYS_XZ;
    if (got >= 3 && memcmp(magic, "BZh", 3) == 0) return CSYS_BZIP2;
    return 0;
}

int csys_decompress_xz_bzip2(int in_fd, int out_fd, csys_error *err) {
    int kind = csys_xz_bzip2_kind(in_fd);
    if (kind < 0) {
        csys_set_error(err, errno, "read", "cannot read: %s", strerror(errno));
        return -1;
    }
    if (kind == 0) {
        csys_set_error(err, 0, "decompress", "neither xz- nor bzip2-compressed");
        return -1;
    }
    const char *name = kind == CSYS_XZ ? "xz" : "bzip2";
    if (csys_load_archive(err) != 0) return -1;
    struct archive *ar = archive_read_new();
    unsigned char *buf = malloc(1 << 20);
    int rc = -1;
    if (!ar || !buf) {
        csys_set_error(err, ENOMEM, "memory", "out of memory");
        goto out;
    }
    /* ARCHIVE_WARN: this libarchive has no liblzma/libbz2 and would run the xz or bzip2
     * program instead; ctr starts no program to decompress */
    int r = kind == CSYS_XZ ? archive_read_support_filter_xz(ar) : archive_read_support_filter_bzip2(ar);
    if (r != ARCHIVE_OK) {
        csys_set_error(err, 0, "decompress", "this libarchive cannot decompress %s itself (it was built without %s)",
                       name, kind == CSYS_XZ ? "liblzma" : "libbz2");
        goto out;
    }
    archive_read_support_format_raw(ar);
    struct archive_entry *e;
    if (archive_read_open_fd(ar, in_fd, 1 << 16) != ARCHIVE_OK || archive_read_next_header(ar, &e) != ARCHIVE_OK) {
        csys_set_error(err, 0, "decompress", "not a valid %s stream: %s", name,
                       archive_error_string(ar) ? archive_error_string(ar) : "no data");
        goto out;
    }
    /* the filter must have taken the stream (else raw would pass the bytes on as they are) */
    if (archive_filter_code(ar, 0) != (kind == CSYS_XZ ? ARCHIVE_FILTER_XZ : ARCHIVE_FILTER_BZIP2)) {
        csys_set_error(err, 0, "decompress", "not a valid %s stream", name);
        goto out;
    }
    for (;;) {
        la_ssize_t n = archive_read_data(ar, buf, 1 << 20);
        if (n == 0) break;
        if (n < 0) {
            csys_set_error(err, 0, "decompress", "not a valid %s stream: %s", name,
                           archive_error_string(ar) ? archive_error_string(ar) : "corrupt data");
            goto out;
        }
        if (csys_write_all(out_fd, buf, (size_t)n) < 0) {
            csys_set_error(err, errno, "write", "cannot write: %s", strerror(errno));
            goto out;
        }
    }
    rc = 0;
out:
    if (ar) archive_read_free(ar);
    free(buf);
    return rc;
}
