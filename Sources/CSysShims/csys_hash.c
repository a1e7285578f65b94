#include "csys.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <unistd.h>

struct csys_sha256 {
    EVP_MD_CTX *ctx;
};

csys_sha256 *csys_sha256_new(void) {
    csys_sha256 *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    h->ctx = EVP_MD_CTX_new();
    if (!h->ctx || EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(h->ctx);
        free(h);
        return NULL;
    }
    return h;
}

void csys_sha256_update(csys_sha256 *h, const void *data, size_t len) {
    if (len) EVP_DigestUpdate(h->ctx, data, len);
}

void csys_sha256_final(csys_sha256 *h, unsigned char out[32]) {
    unsigned int n = 32;
    EVP_DigestFinal_ex(h->ctx, out, &n);
}

void csys_sha256_reset(csys_sha256 *h) {
    EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL);
}

void csys_sha256_free(csys_sha256 *h) {
    if (!h) return;
    EVP_MD_CTX_free(h->ctx);
    free(h);
}

void csys_sha256_oneshot(const void *data, size_t len, unsigned char out[32]) {
    unsigned int n = 32;
    EVP_Digest(data, len, out, &n, EVP_sha256(), NULL);
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
