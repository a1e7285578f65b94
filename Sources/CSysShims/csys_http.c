/* HTTP for the registry client: libcurl, with bodies streamed to files/pipes and hashed. */
#include "csys_internal.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

struct csys_http {
    CURL *curl;
};

static pthread_once_t once = PTHREAD_ONCE_INIT;
static void global_init(void) { curl_global_init(CURL_GLOBAL_ALL); }

csys_http *csys_http_new(void) {
    if (csys_load_curl(NULL) != 0) return NULL;
    pthread_once(&once, global_init);
    csys_http *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    h->curl = curl_easy_init();
    if (!h->curl) { free(h); return NULL; }
    return h;
}

void csys_http_free(csys_http *h) {
    if (!h) return;
    curl_easy_cleanup(h->curl);
    free(h);
}

typedef struct ctx {
    csys_http *h;
    const csys_http_request *req;
    csys_http_response *resp;
    size_t hcap, bcap;
    size_t hlen;
    uint64_t sent;
    int status_known;
    long status;
    uint64_t skip;
    int64_t last_activity_ms;   /* the last byte of any kind (headers too), or the start */
    int64_t give_up_at_ms;
    curl_off_t seen_dl, seen_ul;
} ctx;

int64_t csys_monotonic_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* body bytes moved: the request is making progress */
static void moved(ctx *c) {
    int64_t now = csys_monotonic_ms();
    c->last_activity_ms = now;
    c->resp->last_data_ms = now;
    if (c->give_up_at_ms) c->give_up_at_ms = now + c->req->idle_ms;
}

static int grow(unsigned char **buf, size_t *cap, size_t need) {
    if (need <= *cap) return 0;
    size_t nc = *cap ? *cap : 4096;
    while (nc < need) nc *= 2;
    unsigned char *nb = realloc(*buf, nc);
    if (!nb) return -1;
    *buf = nb;
    *cap = nc;
    return 0;
}

static size_t on_header(char *data, size_t size, size_t n, void *userp) {
    ctx *c = userp;
    size_t len = size * n;
    c->last_activity_ms = csys_monotonic_ms();
    if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        c->hlen = 0; /* a new response (after a redirect or 100 Continue) */
        c->status_known = 0;
    }
    if (grow((unsigned char **)&c->resp->headers, &c->hcap, c->hlen + len + 1) < 0) return 0;
    memcpy(c->resp->headers + c->hlen, data, len);
    c->hlen += len;
    c->resp->headers[c->hlen] = 0;
    return len;
}

static size_t on_body(char *data, size_t size, size_t n, void *userp) {
    ctx *c = userp;
    size_t len = size * n;
    const csys_http_request *r = c->req;
    csys_http_response *resp = c->resp;
    if (!c->status_known) {
        curl_easy_getinfo(c->h->curl, CURLINFO_RESPONSE_CODE, &c->status);
        c->status_known = 1;
        resp->partial = c->status == 206;
        c->skip = (r->resume_from && c->status == 200) ? r->resume_from : 0;
    }
    if (c->status < 200 || c->status >= 300) {
        c->last_activity_ms = csys_monotonic_ms();
        /* an error document: keep the start of it for the message */
        size_t keep = resp->body_len < 65536 ? 65536 - resp->body_len : 0;
        if (keep > len) keep = len;
        if (keep) {
            if (grow(&resp->body, &c->bcap, resp->body_len + keep + 1) < 0) return 0;
            memcpy(resp->body + resp->body_len, data, keep);
            resp->body_len += keep;
            resp->body[resp->body_len] = 0;
        }
        return len;
    }
    if (c->skip) {
        size_t k = c->skip < len ? (size_t)c->skip : len;
        c->skip -= k;
        data += k;
        len -= k;
        if (!len) return k;
    }
    size_t consumed = size * n;
    if (r->limit && resp->received + len + r->resume_from > r->limit) {
        resp->too_large = 1;
        return 0;
    }
    if (r->max_body) {
        if (resp->body_len + len > r->max_body) {
            resp->too_large = 1;
            return 0; /* stops the transfer */
        }
        if (grow(&resp->body, &c->bcap, resp->body_len + len + 1) < 0) return 0;
        memcpy(resp->body + resp->body_len, data, len);
        resp->body_len += len;
        resp->body[resp->body_len] = 0;
    }
    if (csys_stop_signal()) return 0;
    if (r->out_fd1 >= 0 && csys_write_all(r->out_fd1, data, len) < 0) goto wfail;
    if (r->out_fd2 >= 0 && csys_write_all(r->out_fd2, data, len) < 0) goto wfail;
    if (r->hash) csys_sha256_update(r->hash, data, len);
    resp->received += len;
    moved(c);
    if (r->progress) __atomic_store_n(r->progress, resp->received + r->resume_from, __ATOMIC_RELAXED);
    return consumed;
wfail:
    resp->write_failed = 1;
    resp->os_errno = errno;
    return 0;
}

/* curl calls this about once a second even while nothing arrives: a stop signal, or a
 * request that has gone quiet for too long, ends the transfer (CURLE_ABORTED_BY_CALLBACK) */
static int on_progress(void *userp, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow) {
    (void)dltotal; (void)ultotal;
    ctx *c = userp;
    if (csys_stop_signal()) return 1;
    int64_t now = csys_monotonic_ms();
    if (dlnow != c->seen_dl || ulnow != c->seen_ul) {
        c->seen_dl = dlnow;
        c->seen_ul = ulnow;
        c->last_activity_ms = now;
    }
    const csys_http_request *r = c->req;
    if ((r->stall_ms > 0 && now - c->last_activity_ms >= r->stall_ms) || (c->give_up_at_ms && now >= c->give_up_at_ms)) {
        c->resp->stalled = 1;
        return 1;
    }
    return 0;
}

static size_t on_read(char *buf, size_t size, size_t n, void *userp) {
    ctx *c = userp;
    const csys_http_request *r = c->req;
    size_t want = size * n;
    if (r->body_fd >= 0) {
        uint64_t left = r->body_size - c->sent;
        if (want > left) want = (size_t)left;
        if (!want) return 0;
        for (;;) {
            ssize_t got = read(r->body_fd, buf, want);
            if (got < 0 && errno == EINTR) continue;
            if (got <= 0) return CURL_READFUNC_ABORT;
            c->sent += (uint64_t)got;
            moved(c);
            if (r->progress) __atomic_store_n(r->progress, c->sent, __ATOMIC_RELAXED);
            return (size_t)got;
        }
    }
    size_t left = r->body_len - (size_t)c->sent;
    if (want > left) want = left;
    memcpy(buf, (const char *)r->body + c->sent, want);
    c->sent += want;
    if (want) moved(c);
    return want;
}

int csys_http_perform(csys_http *h, const csys_http_request *r, csys_http_response *resp) {
    memset(resp, 0, sizeof *resp);
    ctx c;
    memset(&c, 0, sizeof c);
    c.h = h;
    c.req = r;
    c.resp = resp;
    c.last_activity_ms = csys_monotonic_ms();
    c.give_up_at_ms = r->give_up_at_ms;
    CURL *cu = h->curl;
    curl_easy_reset(cu);
    curl_easy_setopt(cu, CURLOPT_URL, r->url);
    curl_easy_setopt(cu, CURLOPT_ERRORBUFFER, resp->error);
    curl_easy_setopt(cu, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(cu, CURLOPT_USERAGENT, "ctr/0.1");
    curl_easy_setopt(cu, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(cu, CURLOPT_HEADERDATA, &c);
    curl_easy_setopt(cu, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(cu, CURLOPT_WRITEDATA, &c);
    curl_easy_setopt(cu, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(cu, CURLOPT_XFERINFODATA, &c);
    curl_easy_setopt(cu, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(cu, CURLOPT_FOLLOWLOCATION, r->follow_redirects ? 1L : 0L);
    curl_easy_setopt(cu, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(cu, CURLOPT_CONNECTTIMEOUT_MS, r->connect_timeout_ms > 0 ? r->connect_timeout_ms : 30000L);
    curl_easy_setopt(cu, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(cu, CURLOPT_SSL_VERIFYPEER, r->verify_tls ? 1L : 0L);
    curl_easy_setopt(cu, CURLOPT_SSL_VERIFYHOST, r->verify_tls ? 2L : 0L);
    if (r->ca_pem) {
        struct curl_blob blob = {(void *)r->ca_pem, r->ca_pem_len, CURL_BLOB_COPY};
        curl_easy_setopt(cu, CURLOPT_CAINFO_BLOB, &blob);
    }
    if (r->client_cert) curl_easy_setopt(cu, CURLOPT_SSLCERT, r->client_cert);
    if (r->client_key) curl_easy_setopt(cu, CURLOPT_SSLKEY, r->client_key);

    struct curl_slist *hl = NULL;
    if (r->resume_from) {
        char range[64];
        snprintf(range, sizeof range, "Range: bytes=%llu-", (unsigned long long)r->resume_from);
        hl = curl_slist_append(hl, range);
    }
    if (r->headers)
        for (const char *const *p = r->headers; *p; p++) hl = curl_slist_append(hl, *p);
    hl = curl_slist_append(hl, "Expect:");

    const char *m = r->method ? r->method : "GET";
    if (strcmp(m, "HEAD") == 0) {
        curl_easy_setopt(cu, CURLOPT_NOBODY, 1L);
    } else if (strcmp(m, "GET") != 0) {
        curl_easy_setopt(cu, CURLOPT_CUSTOMREQUEST, m);
        if (r->has_body) {
            uint64_t size = r->body_fd >= 0 ? r->body_size : (uint64_t)r->body_len;
            curl_easy_setopt(cu, CURLOPT_UPLOAD, 1L);
            curl_easy_setopt(cu, CURLOPT_INFILESIZE_LARGE, (curl_off_t)size);
            curl_easy_setopt(cu, CURLOPT_READFUNCTION, on_read);
            curl_easy_setopt(cu, CURLOPT_READDATA, &c);
        } else if (strcmp(m, "DELETE") != 0) {
            /* an empty body, with Content-Length: 0 */
            curl_easy_setopt(cu, CURLOPT_POSTFIELDS, "");
            curl_easy_setopt(cu, CURLOPT_POSTFIELDSIZE, 0L);
        }
    }
    curl_easy_setopt(cu, CURLOPT_HTTPHEADER, hl);

    CURLcode rc = curl_easy_perform(cu);
    curl_slist_free_all(hl);
    resp->curl_code = (int)rc;
    curl_easy_getinfo(cu, CURLINFO_RESPONSE_CODE, &resp->status);
    if (rc == CURLE_WRITE_ERROR && (resp->too_large || resp->write_failed)) {
        /* our own stop: the caller looks at too_large / write_failed */
    }
    if (rc == CURLE_ABORTED_BY_CALLBACK && resp->stalled)
        snprintf(resp->error, sizeof resp->error, "nothing received for %.1f s",
                 (double)(csys_monotonic_ms() - c.last_activity_ms) / 1000.0);
    if (rc != CURLE_OK && !resp->error[0]) snprintf(resp->error, sizeof resp->error, "%s", curl_easy_strerror(rc));
    return rc == CURLE_OK ? 0 : -1;
}

void csys_http_response_free(csys_http_response *resp) {
    free(resp->headers);
    free(resp->body);
    resp->headers = NULL;
    resp->body = NULL;
}

int csys_http_error_kind(int code) {
    switch ((CURLcode)code) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY: return 1;
    case CURLE_COULDNT_CONNECT: return 2;
    case CURLE_PEER_FAILED_VERIFICATION:
#if LIBCURL_VERSION_NUM < 0x073e00
    case CURLE_SSL_CACERT:
#endif
        return 3;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE: return 4;
    case CURLE_OPERATION_TIMEDOUT: return 5;
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM: return 6;
    default: return 0;
    }
}
