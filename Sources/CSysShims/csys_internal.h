/* Internal helpers shared by the C files of CSysShims. Not part of the Swift interface. */
#ifndef CSYS_INTERNAL_H
#define CSYS_INTERNAL_H

#include "include/csys.h"
#include <locale.h>
#include <isa-l/igzip_lib.h>
#include <zlib.h>
#include <zstd.h>

/* 1: gzip through ISA-L (libisal.so.2 loaded), 0: through zlib (csys_lazy.c). */
int csys_gzip_isal(void);

/* ---- input stream: read, detect compression, decompress, hash both sides ---- */
typedef struct csys_instream {
    int fd;
    int compression;
    csys_sha256 *h_in, *h_out;
    struct inflate_state *gz; /* ISA-L: several times faster than zlib */
    z_stream *zgz;            /* zlib, where ISA-L is missing */
    ZSTD_DStream *zs;
    unsigned char *inbuf;
    size_t in_cap, in_len, in_pos;
    int in_eof;
    unsigned char *outbuf;
    size_t out_cap;
    int stream_end; /* compressed stream finished */
    uint64_t in_total, out_total;
    csys_error *err;
} csys_instream;

int csys_instream_open(csys_instream *s, int fd, csys_error *err);
/* Returns bytes available at *buf (0 at end), or -1 with err set. */
ssize_t csys_instream_read(csys_instream *s, const void **buf);
/* Read and hash whatever remains (tar padding after the end-of-archive marker). */
int csys_instream_drain(csys_instream *s);
void csys_instream_finish(csys_instream *s, unsigned char digest[32], unsigned char diff_id[32]);
void csys_instream_close(csys_instream *s);

/* ---- output stream: hash input, compress, hash output, write ---- */
typedef struct csys_outstream {
    int fd;
    int compression;
    csys_sha256 *h_in, *h_out;
    struct isal_zstream *gz;
    unsigned char *gz_level_buf;
    z_stream *zgz; /* zlib, where ISA-L is missing */
    ZSTD_CStream *zs;
    unsigned char *buf;
    size_t cap;
    uint64_t in_total, out_total;
    csys_error *err;
    const char *name; /* fd's name, for a write error (NULL: none) */
} csys_outstream;

int csys_outstream_open(csys_outstream *s, int fd, int compression, int level, csys_error *err);
int csys_outstream_write(csys_outstream *s, const void *data, size_t len);
int csys_outstream_close(csys_outstream *s, unsigned char digest[32], unsigned char diff_id[32]);
void csys_outstream_free(csys_outstream *s);

int csys_write_all(int fd, const void *buf, size_t len);
/* A failed write of an output: "cannot write NAME: …" when its name is known. */
void csys_write_error(csys_error *err, const char *name);

/* ---- paths ---- */
/* Clean an archive entry name into a relative path with no ".", "..", or empty components
 * ("/a/../../b/" -> "b"). Returns 0, or -1 if the result is the root itself (""). */
int csys_clean_path(const char *in, char *out, size_t outsz);

/* ---- a set of strings (paths created by the current layer) ---- */
typedef struct csys_strset {
    char **slots;
    size_t cap, len;
} csys_strset;
int csys_strset_add(csys_strset *s, const char *str);
int csys_strset_has(const csys_strset *s, const char *str);
void csys_strset_free(csys_strset *s);

/* Mark every fd from `first` up close-on-exec: close_range(CLOSE_RANGE_CLOEXEC) (5.11), else
 * one fcntl per possible fd. Safe after fork (syscalls only). */
void csys_cloexec_from(unsigned first);
/* Make this thread's LC_CTYPE UTF-8 (tar names are UTF-8 pax records, whatever the process
 * locale); returns what to give csys_utf8_end. */
locale_t csys_utf8_begin(void);
void csys_utf8_end(locale_t old);

/* One message of `len` bytes carrying nfds fds (SCM_RIGHTS, at most CSYS_SCM_MAX_FDS), and its
 * receiving side: the fds land CLOEXEC in fds[0..*nfds) (any beyond maxfds are closed). No
 * allocation (usable after clone); EINTR retried. Return what sendmsg/recvmsg return. */
#define CSYS_SCM_MAX_FDS 253
ssize_t csys_send_with_fds(int sock, const void *data, size_t len, const int *fds, int nfds, int flags);
ssize_t csys_recv_with_fds(int sock, void *data, size_t len, int *fds, int maxfds, int *nfds);

#endif
