/* SHA-256 with OpenSSL's low-level interface: SHA-NI where the CPU has it, and no provider
 * lookups or locks, so it is safe in a child forked from a multi-threaded process. */
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include "csys.h"

#include <errno.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <unistd.h>

struct csys_sha256 {
    SHA256_CTX ctx;
};

csys_sha256 *csys_sha256_new(void) {
    csys_sha256 *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    SHA256_Init(&h->ctx);
    return h;
}

void csys_sha256_update(csys_sha256 *h, const void *data, size_t len) {
    if (len) SHA256_Update(&h->ctx, data, len);
}

void csys_sha256_final(csys_sha256 *h, unsigned char out[32]) {
    SHA256_Final(out, &h->ctx);
}

void csys_sha256_reset(csys_sha256 *h) {
    SHA256_Init(&h->ctx);
}

void csys_sha256_free(csys_sha256 *h) {
    free(h);
}

void csys_sha256_oneshot(const void *data, size_t len, unsigned char out[32]) {
    SHA256(data, len, out);
}

int csys_sha256_fd(int fd, unsigned char out[32], uint64_t *size) {
    csys_sha256 *h = csys_sha256_new();
    if (!h) { errno = ENOMEM; return -1; }
    size_t cap = 1 << 20;
    unsigned char *buf = malloc(cap);
    if (!buf) { csys_sha256_free(h); errno = ENOMEM; return -1; }
    uint64_t total = 0;
    for (;;) {
        ssize_t n = read(fd, buf, cap);
        if (n < 0) {
            if (errno == EINTR) continue;
            int e = errno; free(buf); csys_sha256_free(h); errno = e; return -1;
        }
        if (n == 0) break;
        csys_sha256_update(h, buf, (size_t)n);
        total += (uint64_t)n;
    }
    csys_sha256_final(h, out);
    free(buf);
    csys_sha256_free(h);
    if (size) *size = total;
    return 0;
}
