/* Streams that hash what they read/write and (de)compress in one pass. gzip goes through
 * ISA-L where libisal.so.2 is installed and through zlib where it is not (csys_gzip_isal). */
#include "csys_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define IN_CAP (512 * 1024)
#define OUT_CAP (1024 * 1024)

static ssize_t read_some(int fd, void *buf, size_t len) {
    for (;;) {
        ssize_t n = read(fd, buf, len);
        if (n >= 0 || errno != EINTR) return n;
    }
}

/* Fill inbuf (keeping unconsumed bytes). Returns 0, or -1 on error. */
static int fill(csys_instream *s) {
    if (s->in_eof) return 0;
    if (s->in_pos > 0) {
        memmove(s->inbuf, s->inbuf + s->in_pos, s->in_len - s->in_pos);
        s->in_len -= s->in_pos;
        s->in_pos = 0;
    }
    while (s->in_len < s->in_cap) {
        ssize_t n = read_some(s->fd, s->inbuf + s->in_len, s->in_cap - s->in_len);
        if (n < 0) {
            csys_set_error(s->err, errno, "read", "read failed: %s", strerror(errno));
            return -1;
        }
        if (n == 0) { s->in_eof = 1; break; }
        csys_sha256_update(s->h_in, s->inbuf + s->in_len, (size_t)n);
        s->in_total += (uint64_t)n;
        s->in_len += (size_t)n;
        if (s->in_len >= 64 * 1024) break;
    }
    return 0;
}

int csys_instream_open(csys_instream *s, int fd, csys_error *err) {
    if (csys_load_codecs(err) != 0) return -1;
    memset(s, 0, sizeof *s);
    s->fd = fd;
    s->err = err;
    s->h_in = csys_sha256_new();
    s->h_out = csys_sha256_new();
    s->in_cap = IN_CAP;
    s->out_cap = OUT_CAP;
    s->inbuf = malloc(s->in_cap);
    s->outbuf = malloc(s->out_cap);
    if (!s->h_in || !s->h_out || !s->inbuf || !s->outbuf) {
        csys_set_error(err, ENOMEM, "memory", "out of memory");
        return -1;
    }
    if (fill(s) < 0) return -1;
    const unsigned char *b = s->inbuf;
    if (s->in_len >= 2 && b[0] == 0x1f && b[1] == 0x8b) {
        s->compression = CSYS_COMPRESSION_GZIP;
        if (!csys_gzip_isal()) {
            z_stream *z = calloc(1, sizeof *z);
            if (!z) {
                csys_set_error(err, ENOMEM, "gzip", "out of memory");
                return -1;
            }
            if (inflateInit2(z, 16 + MAX_WBITS) != Z_OK) { /* gzip wrapper only */
                free(z);
                csys_set_error(err, ENOMEM, "gzip", "cannot initialise zlib");
                return -1;
            }
            s->zgz = z;
            return 0;
        }
        s->gz = malloc(sizeof *s->gz);
        if (!s->gz) {
            csys_set_error(err, ENOMEM, "gzip", "out of memory");
            return -1;
        }
        isal_inflate_init(s->gz);
        s->gz->crc_flag = ISAL_GZIP;
    } else if (s->in_len >= 4 && b[0] == 0x28 && b[1] == 0xb5 && b[2] == 0x2f && b[3] == 0xfd) {
        s->compression = CSYS_COMPRESSION_ZSTD;
        s->zs = ZSTD_createDStream();
        if (!s->zs) {
            csys_set_error(err, ENOMEM, "zstd", "cannot initialise zstd");
            return -1;
        }
        ZSTD_initDStream(s->zs);
    } else if (s->in_len >= 3 && b[0] == 'B' && b[1] == 'Z' && b[2] == 'h') {
        csys_set_error(err, 0, "format", "bzip2-compressed layers are not supported");
        return -1;
    } else if (s->in_len >= 6 && b[0] == 0xfd && b[1] == '7' && b[2] == 'z' && b[3] == 'X') {
        csys_set_error(err, 0, "format", "xz-compressed layers are not supported");
        return -1;
    } else {
        s->compression = CSYS_COMPRESSION_NONE;
    }
    return 0;
}

ssize_t csys_instream_read(csys_instream *s, const void **buf) {
    if (s->compression == CSYS_COMPRESSION_NONE) {
        if (s->in_pos >= s->in_len) {
            s->in_pos = s->in_len = 0;
            if (s->in_eof) return 0;
            if (fill(s) < 0) return -1;
            if (s->in_len == 0) return 0;
        }
        *buf = s->inbuf + s->in_pos;
        size_t n = s->in_len - s->in_pos;
        s->in_pos = s->in_len;
        csys_sha256_update(s->h_out, *buf, n);
        s->out_total += n;
        return (ssize_t)n;
    }
    for (;;) {
        if (s->stream_end) {
            /* A finished member: another gzip member may follow (multi-member files); trailing
             * zero bytes are tolerated, anything else is an error. */
            if (s->in_pos >= s->in_len) {
                if (s->in_eof) return 0;
                if (fill(s) < 0) return -1;
                if (s->in_len == 0) return 0;
                continue;
            }
            const unsigned char *b = s->inbuf + s->in_pos;
            size_t avail = s->in_len - s->in_pos;
            if (s->compression == CSYS_COMPRESSION_GZIP && b[0] == 0x1f) {
                if (s->zgz) {
                    inflateReset(s->zgz);
                } else {
                    isal_inflate_reset(s->gz);
                    s->gz->crc_flag = ISAL_GZIP;
                }
                s->stream_end = 0;
            } else if (s->compression == CSYS_COMPRESSION_ZSTD && avail >= 4 && b[0] == 0x28) {
                ZSTD_initDStream(s->zs);
                s->stream_end = 0;
            } else {
                for (size_t k = 0; k < avail; k++) {
                    if (b[k] != 0) {
                        csys_set_error(s->err, 0, "decompress", "trailing garbage after the compressed stream");
                        return -1;
                    }
                }
                s->in_pos = s->in_len;
                continue;
            }
        }
        if (s->in_pos >= s->in_len && !s->in_eof) {
            if (fill(s) < 0) return -1;
        }
        if (s->in_pos >= s->in_len && s->in_eof) {
            csys_set_error(s->err, 0, "decompress", "%s stream is truncated",
                           s->compression == CSYS_COMPRESSION_GZIP ? "gzip" : "zstd");
            return -1;
        }
        size_t produced = 0;
        size_t before = s->in_pos;
        if (s->zgz) {
            z_stream *z = s->zgz;
            z->next_in = s->inbuf + s->in_pos;
            z->avail_in = (uInt)(s->in_len - s->in_pos);
            z->next_out = s->outbuf;
            z->avail_out = (uInt)s->out_cap;
            int rc = inflate(z, Z_NO_FLUSH);
            s->in_pos = s->in_len - z->avail_in;
            produced = s->out_cap - z->avail_out;
            if (rc == Z_STREAM_END) {
                s->stream_end = 1;
            } else if (rc != Z_OK && rc != Z_BUF_ERROR) { /* Z_BUF_ERROR: no progress, handled below */
                csys_set_error(s->err, 0, "decompress", "gzip: %s", z->msg ? z->msg : "corrupt deflate data");
                return -1;
            }
        } else if (s->compression == CSYS_COMPRESSION_GZIP) {
            s->gz->next_in = s->inbuf + s->in_pos;
            s->gz->avail_in = (uint32_t)(s->in_len - s->in_pos);
            s->gz->next_out = s->outbuf;
            s->gz->avail_out = (uint32_t)s->out_cap;
            int rc = isal_inflate(s->gz);
            s->in_pos = s->in_len - s->gz->avail_in;
            produced = s->out_cap - s->gz->avail_out;
            if (rc < 0) {
                const char *why = rc == ISAL_INCORRECT_CHECKSUM ? "incorrect data check"
                                : rc == ISAL_INVALID_WRAPPER    ? "invalid gzip header"
                                : rc == ISAL_UNSUPPORTED_METHOD ? "unsupported compression method"
                                                                : "corrupt deflate data";
                csys_set_error(s->err, 0, "decompress", "gzip: %s", why);
                return -1;
            }
            if (s->gz->block_state == ISAL_BLOCK_FINISH) s->stream_end = 1;
        } else {
            ZSTD_inBuffer in = {s->inbuf + s->in_pos, s->in_len - s->in_pos, 0};
            ZSTD_outBuffer out = {s->outbuf, s->out_cap, 0};
            size_t rc = ZSTD_decompressStream(s->zs, &out, &in);
            if (ZSTD_isError(rc)) {
                csys_set_error(s->err, 0, "decompress", "zstd: %s", ZSTD_getErrorName(rc));
                return -1;
            }
            s->in_pos += in.pos;
            produced = out.pos;
            if (rc == 0) s->stream_end = 1;
        }
        if (!produced && s->in_pos == before && !s->stream_end) {
            /* no progress: the decoder needs more input than is buffered */
            if (s->in_eof) {
                csys_set_error(s->err, 0, "decompress", "%s stream is truncated",
                               s->compression == CSYS_COMPRESSION_GZIP ? "gzip" : "zstd");
                return -1;
            }
            if (fill(s) < 0) return -1;
            continue;
        }
        if (produced) {
            csys_sha256_update(s->h_out, s->outbuf, produced);
            s->out_total += produced;
            *buf = s->outbuf;
            return (ssize_t)produced;
        }
    }
}

int csys_instream_drain(csys_instream *s) {
    const void *b;
    for (;;) {
        ssize_t n = csys_instream_read(s, &b);
        if (n < 0) return -1;
        if (n == 0) return 0;
    }
}

void csys_instream_finish(csys_instream *s, unsigned char digest[32], unsigned char diff_id[32]) {
    csys_sha256_final(s->h_in, digest);
    csys_sha256_final(s->h_out, diff_id);
}

void csys_instream_close(csys_instream *s) {
    free(s->gz);
    if (s->zgz) {
        inflateEnd(s->zgz);
        free(s->zgz);
    }
    if (s->zs) ZSTD_freeDStream(s->zs);
    csys_sha256_free(s->h_in);
    csys_sha256_free(s->h_out);
    free(s->inbuf);
    free(s->outbuf);
    memset(s, 0, sizeof *s);
}

/* ---------------- output ---------------- */

int csys_outstream_open(csys_outstream *s, int fd, int compression, int level, csys_error *err) {
    if (csys_load_codecs(err) != 0) return -1;
    memset(s, 0, sizeof *s);
    s->fd = fd;
    s->err = err;
    s->compression = compression;
    s->h_in = csys_sha256_new();
    s->h_out = csys_sha256_new();
    s->cap = OUT_CAP;
    s->buf = malloc(s->cap);
    if (!s->h_in || !s->h_out || !s->buf) {
        csys_set_error(err, ENOMEM, "memory", "out of memory");
        return -1;
    }
    if (compression == CSYS_COMPRESSION_GZIP && !csys_gzip_isal()) {
        /* zlib: level 1 by default, which compresses about as well as ISA-L's level 1 (at a
         * sixth of its speed); its gzip header has no timestamp or name either. The bytes
         * differ from ISA-L's, the layer's diff-id does not. */
        if (level <= 0) level = 1;
        if (level > 9) level = 9;
        z_stream *z = calloc(1, sizeof *z);
        if (!z) {
            csys_set_error(err, ENOMEM, "gzip", "out of memory");
            return -1;
        }
        if (deflateInit2(z, level, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
            free(z);
            csys_set_error(err, ENOMEM, "gzip", "cannot initialise zlib");
            return -1;
        }
        s->zgz = z;
    } else if (compression == CSYS_COMPRESSION_GZIP) {
        /* ISA-L, level 1 by default (0-3): its generic gzip header has no timestamp or name,
         * so the same input gives the same bytes */
        if (level <= 0) level = 1;
        if (level > ISAL_DEF_MAX_LEVEL) level = ISAL_DEF_MAX_LEVEL;
        size_t lb = level == 1 ? ISAL_DEF_LVL1_DEFAULT : level == 2 ? ISAL_DEF_LVL2_DEFAULT : ISAL_DEF_LVL3_DEFAULT;
        s->gz = malloc(sizeof *s->gz);
        s->gz_level_buf = malloc(lb);
        if (!s->gz || !s->gz_level_buf) {
            csys_set_error(err, ENOMEM, "gzip", "out of memory");
            return -1;
        }
        isal_deflate_init(s->gz);
        s->gz->level = (uint32_t)level;
        s->gz->level_buf = s->gz_level_buf;
        s->gz->level_buf_size = (uint32_t)lb;
        s->gz->gzip_flag = IGZIP_GZIP;
        s->gz->flush = NO_FLUSH;
    } else if (compression == CSYS_COMPRESSION_ZSTD) {
        s->zs = ZSTD_createCStream();
        if (!s->zs) {
            csys_set_error(err, ENOMEM, "zstd", "cannot initialise zstd");
            return -1;
        }
        ZSTD_CCtx_setParameter(s->zs, ZSTD_c_compressionLevel, level ? level : 3);
        ZSTD_CCtx_setParameter(s->zs, ZSTD_c_checksumFlag, 1);
    }
    return 0;
}

static int emit(csys_outstream *s, const void *data, size_t len) {
    if (!len) return 0;
    csys_sha256_update(s->h_out, data, len);
    s->out_total += len;
    if (s->fd >= 0 && csys_write_all(s->fd, data, len) < 0) {
        csys_write_error(s->err, s->name);
        return -1;
    }
    return 0;
}

static int zlib_deflate_some(csys_outstream *s, const void *data, size_t len, int finish) {
    z_stream *z = s->zgz;
    z->next_in = (Bytef *)data;
    z->avail_in = (uInt)len;
    for (;;) {
        z->next_out = s->buf;
        z->avail_out = (uInt)s->cap;
        int rc = deflate(z, finish ? Z_FINISH : Z_NO_FLUSH);
        if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) { /* Z_BUF_ERROR: nothing to do */
            csys_set_error(s->err, 0, "gzip", "compression failed (%d)", rc);
            return -1;
        }
        if (emit(s, s->buf, s->cap - z->avail_out) < 0) return -1;
        if (finish) {
            if (rc == Z_STREAM_END) return 0;
        } else if (z->avail_in == 0 && z->avail_out != 0) {
            return 0;
        }
    }
}

static int deflate_some(csys_outstream *s, const void *data, size_t len, int finish) {
    if (s->zgz) return zlib_deflate_some(s, data, len, finish);
    s->gz->next_in = (uint8_t *)data;
    s->gz->avail_in = (uint32_t)len;
    s->gz->end_of_stream = finish ? 1 : 0;
    for (;;) {
        s->gz->next_out = s->buf;
        s->gz->avail_out = (uint32_t)s->cap;
        int rc = isal_deflate(s->gz);
        if (rc != COMP_OK) {
            csys_set_error(s->err, 0, "gzip", "compression failed (%d)", rc);
            return -1;
        }
        if (emit(s, s->buf, s->cap - s->gz->avail_out) < 0) return -1;
        if (finish) {
            if (s->gz->internal_state.state == ZSTATE_END) return 0;
        } else if (s->gz->avail_in == 0 && s->gz->avail_out != 0) {
            return 0;
        }
    }
}

static int zstd_some(csys_outstream *s, const void *data, size_t len, ZSTD_EndDirective end) {
    ZSTD_inBuffer in = {data, len, 0};
    for (;;) {
        ZSTD_outBuffer out = {s->buf, s->cap, 0};
        size_t rem = ZSTD_compressStream2(s->zs, &out, &in, end);
        if (ZSTD_isError(rem)) {
            csys_set_error(s->err, 0, "zstd", "compression failed: %s", ZSTD_getErrorName(rem));
            return -1;
        }
        if (emit(s, s->buf, out.pos) < 0) return -1;
        if (end == ZSTD_e_end ? rem == 0 : in.pos == in.size) return 0;
    }
}

int csys_outstream_write(csys_outstream *s, const void *data, size_t len) {
    if (!len) return 0;
    csys_sha256_update(s->h_in, data, len);
    s->in_total += len;
    switch (s->compression) {
    case CSYS_COMPRESSION_GZIP: return deflate_some(s, data, len, 0);
    case CSYS_COMPRESSION_ZSTD: return zstd_some(s, data, len, ZSTD_e_continue);
    default: return emit(s, data, len);
    }
}

int csys_outstream_close(csys_outstream *s, unsigned char digest[32], unsigned char diff_id[32]) {
    int rc = 0;
    if (s->compression == CSYS_COMPRESSION_GZIP) rc = deflate_some(s, NULL, 0, 1);
    else if (s->compression == CSYS_COMPRESSION_ZSTD) rc = zstd_some(s, NULL, 0, ZSTD_e_end);
    csys_sha256_final(s->h_out, digest);
    csys_sha256_final(s->h_in, diff_id);
    return rc;
}

void csys_outstream_free(csys_outstream *s) {
    free(s->gz);
    if (s->zgz) {
        deflateEnd(s->zgz);
        free(s->zgz);
    }
    free(s->gz_level_buf);
    if (s->zs) ZSTD_freeCStream(s->zs);
    csys_sha256_free(s->h_in);
    csys_sha256_free(s->h_out);
    free(s->buf);
    memset(s, 0, sizeof *s);
}

/* ---------------- whole-stream copies ---------------- */

int csys_decompress_copy(csys_decompress *d) {
    csys_instream s;
    int rc = -1;
    if (csys_instream_open(&s, d->in_fd, &d->error) < 0) goto out;
    d->compression = s.compression;
    for (;;) {
        const void *b;
        ssize_t n = csys_instream_read(&s, &b);
        if (n < 0) goto out;
        if (n == 0) break;
        if (d->out_fd >= 0 && csys_write_all(d->out_fd, b, (size_t)n) < 0) {
            csys_write_error(&d->error, d->out_name);
            goto out;
        }
    }
    csys_instream_finish(&s, d->digest, d->diff_id);
    d->size = s.in_total;
    d->tar_size = s.out_total;
    rc = 0;
out:
    csys_instream_close(&s);
    return rc;
}

int csys_compress_copy(csys_compress *c) {
    csys_outstream o;
    int rc = -1;
    unsigned char *buf = malloc(IN_CAP);
    if (!buf) {
        csys_set_error(&c->error, ENOMEM, "memory", "out of memory");
        return -1;
    }
    if (csys_outstream_open(&o, c->out_fd, c->compression, c->level, &c->error) < 0) goto out;
    o.name = c->out_name;
    for (;;) {
        ssize_t n = read_some(c->in_fd, buf, IN_CAP);
        if (n < 0) {
            csys_set_error(&c->error, errno, "read", "read failed: %s", strerror(errno));
            goto out;
        }
        if (n == 0) break;
        if (csys_outstream_write(&o, buf, (size_t)n) < 0) goto out;
    }
    if (csys_outstream_close(&o, c->digest, c->diff_id) < 0) goto out;
    c->size = o.out_total;
    c->tar_size = o.in_total;
    rc = 0;
out:
    csys_outstream_free(&o);
    free(buf);
    return rc;
}
