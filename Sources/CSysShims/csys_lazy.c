/*
 * libarchive and libcurl, bound on first use instead of at start-up.
 *
 * Linking them pulls in some 35 more libraries (TLS stacks, Kerberos, LDAP, ICU via libxml2)
 * that the dynamic linker would map and relocate on every ctr invocation — most of `ctr run`'s
 * start-up. Instead each function used is a two-instruction stub jumping through a pointer;
 * csys_load_archive() / csys_load_curl() dlopen the library and fill the pointers. They are
 * called in the parent before any fork (dlopen after fork in a threaded process is unsafe):
 * by the Swift wrappers before layer jobs, and by the C entry points that run in the parent.
 * A stub called before its library is loaded aborts with a message, never jumps to nowhere.
 *
 * The stubs are hidden: they serve ctr's own calls only. An exported stub (a static-stdlib
 * build links with --export-dynamic) would interpose the library's symbol for every other
 * library too: libssl's TLS handshake called libcrypto's SHA256_Init through ctr's stub, which
 * aborted when nothing had hashed yet.
 */
#include "csys_internal.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void csys_lazy_missing(void) {
    static const char m[] = "ctr: internal error: a libarchive/libcurl function was called before its library was loaded\n";
    (void)!write(2, m, sizeof m - 1);
    abort();
}

#if defined(__x86_64__)
#define CSYS_STUB_ASM(sym) \
    __asm__(".text\n.globl " #sym "\n.hidden " #sym "\n.type " #sym ",@function\n" #sym ":\n\tjmp *csys_lazy_p_" #sym "(%rip)\n.size " #sym ", .-" #sym "\n");
#elif defined(__aarch64__)
#define CSYS_STUB_ASM(sym) \
    __asm__(".text\n.globl " #sym "\n.hidden " #sym "\n.type " #sym ",%function\n" #sym ":\n\tadrp x16, csys_lazy_p_" #sym "\n\tldr x16, [x16, :lo12:csys_lazy_p_" #sym "]\n\tbr x16\n.size " #sym ", .-" #sym "\n");
#else
#error "csys_lazy.c: add the stub for this architecture"
#endif

#define CSYS_STUB(sym) \
    __attribute__((used, visibility("hidden"))) void *csys_lazy_p_##sym = (void *)csys_lazy_missing; \
    CSYS_STUB_ASM(sym)

#define CSYS_ARCHIVE_SYMS(X) \
    X(archive_entry_clear) \
    X(archive_entry_filetype) \
    X(archive_entry_free) \
    X(archive_entry_gid) \
    X(archive_entry_hardlink) \
    X(archive_entry_mtime) \
    X(archive_entry_mtime_nsec) \
    X(archive_entry_new) \
    X(archive_entry_pathname) \
    X(archive_entry_perm) \
    X(archive_entry_rdev) \
    X(archive_entry_set_filetype) \
    X(archive_entry_set_gid) \
    X(archive_entry_set_hardlink) \
    X(archive_entry_set_mtime) \
    X(archive_entry_set_pathname) \
    X(archive_entry_set_perm) \
    X(archive_entry_set_rdev) \
    X(archive_entry_set_size) \
    X(archive_entry_set_symlink) \
    X(archive_entry_set_uid) \
    X(archive_entry_size) \
    X(archive_entry_symlink) \
    X(archive_entry_uid) \
    X(archive_entry_xattr_add_entry) \
    X(archive_entry_xattr_next) \
    X(archive_entry_xattr_reset) \
    X(archive_errno) \
    X(archive_error_string) \
    X(archive_filter_code) \
    X(archive_read_data) \
    X(archive_read_data_block) \
    X(archive_read_data_skip) \
    X(archive_read_free) \
    X(archive_read_new) \
    X(archive_read_next_header) \
    X(archive_read_open) \
    X(archive_read_open_fd) \
    X(archive_read_support_filter_bzip2) \
    X(archive_read_support_filter_xz) \
    X(archive_read_support_format_raw) \
    X(archive_read_support_format_tar) \
    X(archive_set_error) \
    X(archive_write_close) \
    X(archive_write_data) \
    X(archive_write_fail) \
    X(archive_write_free) \
    X(archive_write_header) \
    X(archive_write_new) \
    X(archive_write_open) \
    X(archive_write_set_bytes_in_last_block) \
    X(archive_write_set_bytes_per_block) \
    X(archive_write_set_format_pax_restricted)

#define CSYS_CURL_SYMS(X) \
    X(curl_easy_cleanup) \
    X(curl_easy_getinfo) \
    X(curl_easy_init) \
    X(curl_easy_perform) \
    X(curl_easy_reset) \
    X(curl_easy_setopt) \
    X(curl_easy_strerror) \
    X(curl_global_init) \
    X(curl_slist_append) \
    X(curl_slist_free_all)

CSYS_ARCHIVE_SYMS(CSYS_STUB)
CSYS_CURL_SYMS(CSYS_STUB)
#define CSYS_CRYPTO_SYMS(X) \
    X(SHA256) \
    X(SHA256_Final) \
    X(SHA256_Init) \
    X(SHA256_Update)

CSYS_CRYPTO_SYMS(CSYS_STUB)

#define CSYS_ZSTD_SYMS(X) \
    X(ZSTD_CCtx_setParameter) \
    X(ZSTD_compressStream2) \
    X(ZSTD_createCStream) \
    X(ZSTD_createDStream) \
    X(ZSTD_decompressStream) \
    X(ZSTD_freeCStream) \
    X(ZSTD_freeDStream) \
    X(ZSTD_getErrorName) \
    X(ZSTD_initDStream) \
    X(ZSTD_isError)

CSYS_ZSTD_SYMS(CSYS_STUB)

#define CSYS_ISAL_SYMS(X) \
    X(isal_deflate) \
    X(isal_deflate_init) \
    X(isal_inflate) \
    X(isal_inflate_init) \
    X(isal_inflate_reset)

CSYS_ISAL_SYMS(CSYS_STUB)

#define CSYS_SECCOMP_SYMS(X) \
    X(seccomp_arch_add) \
    X(seccomp_arch_native) \
    X(seccomp_attr_set) \
    X(seccomp_export_bpf) \
    X(seccomp_init) \
    X(seccomp_release) \
    X(seccomp_rule_add_array) \
    X(seccomp_syscall_resolve_name) \
    X(seccomp_version)

CSYS_SECCOMP_SYMS(CSYS_STUB)

/* One table per library: its soname, the package to install, and the stubs' pointers. */
typedef struct lazy_sym {
    const char *name;
    void **slot;
} lazy_sym;

typedef struct lazy_lib {
    pthread_once_t once;
    const char *soname, *package;
    const lazy_sym *syms;
    size_t nsyms;
    int ok;
    char why[200];
} lazy_lib;

static void bind_lib(lazy_lib *L) {
    void *h = dlopen(L->soname, RTLD_NOW | RTLD_GLOBAL);
    if (!h) {
        snprintf(L->why, sizeof L->why, "cannot load %s: %s", L->soname, dlerror());
        return;
    }
    for (size_t i = 0; i < L->nsyms; i++) {
        void *p = dlsym(h, L->syms[i].name);
        if (!p) {
            snprintf(L->why, sizeof L->why, "%s has no %s", L->soname, L->syms[i].name);
            return;
        }
        *L->syms[i].slot = p;
    }
    L->ok = 1;
}

#define CSYS_SYM_ENTRY(sym) {#sym, &csys_lazy_p_##sym},
#define CSYS_LIB(var, so, pkg, SYMS)                                                                    \
    static const lazy_sym var##_syms[] = {SYMS(CSYS_SYM_ENTRY)};                                        \
    static lazy_lib var = {PTHREAD_ONCE_INIT, so, pkg, var##_syms, sizeof var##_syms / sizeof var##_syms[0], 0, ""}; \
    static void var##_bind(void) { bind_lib(&var); }

CSYS_LIB(archive_lib, "libarchive.so.13", "libarchive13", CSYS_ARCHIVE_SYMS)
CSYS_LIB(curl_lib, "libcurl.so.4", "libcurl4", CSYS_CURL_SYMS)
CSYS_LIB(crypto_lib, "libcrypto.so.3", "libssl3", CSYS_CRYPTO_SYMS)
CSYS_LIB(zstd_lib, "libzstd.so.1", "libzstd1", CSYS_ZSTD_SYMS)
CSYS_LIB(isal_lib, "libisal.so.2", "libisal2", CSYS_ISAL_SYMS)
CSYS_LIB(seccomp_lib, "libseccomp.so.2", "libseccomp2", CSYS_SECCOMP_SYMS)

/* Bind once; on failure fill err, or (no err: a caller with no way to report) abort with the
 * reason. */
static int load_one(lazy_lib *L, void (*bind)(void), csys_error *err) {
    pthread_once(&L->once, bind);
    if (L->ok) return 0;
    if (err) {
        csys_set_error(err, 0, "dlopen", "%s (install %s)", L->why, L->package);
        return -1;
    }
    char m[300];
    int n = snprintf(m, sizeof m, "ctr: %s (install %s)\n", L->why, L->package);
    (void)!write(2, m, (size_t)n);
    abort();
}

/* OpenSSL's SHA-256, zstd, ISA-L and libseccomp are bound on first use too (`ctr run` with a
 * cached seccomp program needs none of them). */
int csys_load_curl(csys_error *err) { return load_one(&curl_lib, curl_lib_bind, err); }
int csys_load_crypto(csys_error *err) { return load_one(&crypto_lib, crypto_lib_bind, err); }
int csys_load_seccomp(csys_error *err) { return load_one(&seccomp_lib, seccomp_lib_bind, err); }
int csys_load_codecs(csys_error *err) {
    if (load_one(&zstd_lib, zstd_lib_bind, err) != 0) return -1;
    if (load_one(&isal_lib, isal_lib_bind, err) != 0) return -1;
    return csys_load_crypto(err);
}
int csys_load_archive(csys_error *err) {
    if (csys_load_codecs(err) != 0) return -1;
    return load_one(&archive_lib, archive_lib_bind, err);
}
