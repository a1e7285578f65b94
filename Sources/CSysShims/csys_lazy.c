/*
 * Libraries bound on first use instead of at start-up, or linked in.
 *
 * Linking libarchive and libcurl dynamically pulls in some 35 more libraries (TLS stacks,
 * Kerberos, LDAP, ICU via libxml2) that the dynamic linker would map and relocate on every ctr
 * invocation — most of `ctr run`'s start-up. Instead each function used is a two-instruction
 * stub jumping through a pointer; csys_load_archive() / csys_load_curl() dlopen the library
 * and fill the pointers. They are called in the parent before any fork (dlopen after fork in a
 * threaded process is unsafe): by the Swift wrappers before layer jobs, and by the C entry
 * points that run in the parent. A stub called before its library is loaded aborts with a
 * message, never jumps to nowhere.
 *
 * The shipped binary (scripts/build.sh defines CSYS_STATIC_LIBS) links libarchive, OpenSSL's
 * libcrypto, zstd, zlib and libseccomp from their static archives instead, so it runs in a
 * CI image that has none of them: only libcurl (whose archive needs Kerberos and LDAP, which
 * Debian ships no archives of) and ISA-L (no archive in Debian) stay stubs here. ISA-L is
 * optional: without libisal.so.2 gzip goes through zlib (csys_stream.c). The archives'
 * symbols are not exported (the static-stdlib link passes --exclude-libs ALL), so the linked
 * libcrypto and the one libcurl's libssl loads cannot interpose each other.
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
    static const char m[] = "ctr: internal error: a library function was called before its library was loaded\n";
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

#define CSYS_CRYPTO_SYMS(X) \
    X(SHA256) \
    X(SHA256_Final) \
    X(SHA256_Init) \
    X(SHA256_Update)

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

/* zlib: gzip when ISA-L is missing (inflateInit2 and deflateInit2 are macros over these) */
#define CSYS_ZLIB_SYMS(X) \
    X(deflate) \
    X(deflateEnd) \
    X(deflateInit2_) \
    X(inflate) \
    X(inflateEnd) \
    X(inflateInit2_) \
    X(inflateReset)

#define CSYS_ISAL_SYMS(X) \
    X(isal_deflate) \
    X(isal_deflate_init) \
    X(isal_inflate) \
    X(isal_inflate_init) \
    X(isal_inflate_reset)

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

CSYS_CURL_SYMS(CSYS_STUB)
CSYS_ISAL_SYMS(CSYS_STUB)
#ifndef CSYS_STATIC_LIBS
CSYS_ARCHIVE_SYMS(CSYS_STUB)
CSYS_CRYPTO_SYMS(CSYS_STUB)
CSYS_ZSTD_SYMS(CSYS_STUB)
CSYS_ZLIB_SYMS(CSYS_STUB)
CSYS_SECCOMP_SYMS(CSYS_STUB)
#endif

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

CSYS_LIB(curl_lib, "libcurl.so.4", "libcurl4", CSYS_CURL_SYMS)
CSYS_LIB(isal_lib, "libisal.so.2", "libisal2", CSYS_ISAL_SYMS)
#ifdef CSYS_STATIC_LIBS
#define LOAD_LINKED(var, err) ((void)(err), 0)
#else
CSYS_LIB(archive_lib, "libarchive.so.13", "libarchive13", CSYS_ARCHIVE_SYMS)
CSYS_LIB(crypto_lib, "libcrypto.so.3", "libssl3", CSYS_CRYPTO_SYMS)
CSYS_LIB(zstd_lib, "libzstd.so.1", "libzstd1", CSYS_ZSTD_SYMS)
CSYS_LIB(zlib_lib, "libz.so.1", "zlib1g", CSYS_ZLIB_SYMS)
CSYS_LIB(seccomp_lib, "libseccomp.so.2", "libseccomp2", CSYS_SECCOMP_SYMS)
#define LOAD_LINKED(var, err) load_one(&var, var##_bind, err)
#endif

/* gzip's engine: ISA-L when libisal.so.2 loads (several times faster), else zlib.
 * CTR_NO_ISAL=1 (a test hook) takes zlib without trying ISA-L. Decided once, in the parent. */
static pthread_once_t gzip_once = PTHREAD_ONCE_INIT;
static int gzip_isal;

static void gzip_choose(void) {
    const char *no = getenv("CTR_NO_ISAL");
    if (no && *no && strcmp(no, "0") != 0) return;
    pthread_once(&isal_lib.once, isal_lib_bind);
    gzip_isal = isal_lib.ok;
}

int csys_gzip_isal(void) {
    pthread_once(&gzip_once, gzip_choose);
    return gzip_isal;
}

/* OpenSSL's SHA-256, zstd, zlib and libseccomp are bound on first use too (`ctr run` with a
 * cached seccomp program needs none of them); linked in, there is nothing to load. */
int csys_load_curl(csys_error *err) { return load_one(&curl_lib, curl_lib_bind, err); }
int csys_load_crypto(csys_error *err) { return LOAD_LINKED(crypto_lib, err); }
int csys_load_seccomp(csys_error *err) { return LOAD_LINKED(seccomp_lib, err); }
int csys_load_codecs(csys_error *err) {
    if (LOAD_LINKED(zstd_lib, err) != 0) return -1;
    if (!csys_gzip_isal() && LOAD_LINKED(zlib_lib, err) != 0) return -1;
    return csys_load_crypto(err);
}
int csys_load_archive(csys_error *err) {
    if (csys_load_codecs(err) != 0) return -1;
    return LOAD_LINKED(archive_lib, err);
}

#ifdef CSYS_STATIC_LIBS
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
/* libarchive's private ARCHIVE_ERRNO_FILE_FORMAT: EFTYPE, which is EILSEQ on Linux */
#define ARCHIVE_ERRNO_FILE_FORMAT EILSEQ
/*
 * libarchive's own definition lives in archive_write_set_format.o with the table of every
 * writer (archive_write_set_format()), and linking that object from libarchive.a drags in the
 * xar writer, libxml2 and ICU, none of which have archives in Debian. The pax writer calls
 * only this function from it, so ctr defines it: the same message for an entry the format
 * cannot hold ("NAME: FORMAT format cannot archive WHAT").
 */
__attribute__((visibility("hidden"))) void __archive_write_entry_filetype_unsupported(struct archive *a, struct archive_entry *entry, const char *format);
void __archive_write_entry_filetype_unsupported(struct archive *a, struct archive_entry *entry, const char *format) {
    const char *what = NULL;
    switch (archive_entry_filetype(entry)) {
    case AE_IFDIR: what = "directories"; break;
    case AE_IFLNK: what = "symbolic links"; break;
    case AE_IFCHR: what = "character devices"; break;
    case AE_IFBLK: what = "block devices"; break;
    case AE_IFIFO: what = "named pipes"; break;
    case AE_IFSOCK: what = "sockets"; break;
    default: break;
    }
    if (what)
        archive_set_error(a, ARCHIVE_ERRNO_FILE_FORMAT, "%s: %s format cannot archive %s",
                          archive_entry_pathname(entry), format, what);
    else
        archive_set_error(a, ARCHIVE_ERRNO_FILE_FORMAT, "%s: %s format cannot archive files with mode 0%lo",
                          archive_entry_pathname(entry), format, (unsigned long)archive_entry_mode(entry));
}
#endif
