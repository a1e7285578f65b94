/*
 * csys: the C half of ctr.
 *
 * Everything that must run after fork()/clone() lives here, as do the hot loops (tar,
 * compression, hashing). Swift prepares plans (paths, flags, id maps) and calls in; errors
 * come back as a csys_error {stage, errno, message}.
 */
#ifndef CSYS_H
#define CSYS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------- errors ---------- */

/* What a caller acts on, beyond "this step failed with this errno" (Swift: CtrError.Code). */
enum {
    CSYS_ERR_SYSTEM = 0, /* a system call or step failed: stage and errno say which */
    CSYS_ERR_EXEC = 1,   /* the container's command could not be executed (errno: why) */
    CSYS_ERR_REFUSED = 2, /* the environment refused a piece of the sandbox (a namespace, a
                           * procfs or sysfs mount, sethostname, mknod): a weaker isolation
                           * level may work (ctr run then takes one) */
};

typedef struct csys_error {
    int err;            /* errno, or 0 */
    char stage[64];     /* what was being done: "open", "archive", "mkdir", ... */
    char message[1024]; /* one line, names the culprit (a path, an entry name) */
    int kind;           /* CSYS_ERR_*; stub/exec_stub.c writes this layout too */
} csys_error;

/* ---------- hashing (OpenSSL) ---------- */

typedef struct csys_sha256 csys_sha256;
csys_sha256 *csys_sha256_new(void);
void csys_sha256_update(csys_sha256 *h, const void *data, size_t len);
/* writes 32 bytes; the context may be reused after csys_sha256_reset */
void csys_sha256_final(csys_sha256 *h, unsigned char out[32]);
void csys_sha256_reset(csys_sha256 *h);
void csys_sha256_free(csys_sha256 *h);
void csys_sha256_oneshot(const void *data, size_t len, unsigned char out[32]);
void csys_sha256_small(const void *data, size_t len, unsigned char out[32]);
/* Hash a whole file from its current offset; returns 0 or -1 with errno. */
int csys_sha256_fd(int fd, unsigned char out[32], uint64_t *size);


/* ---------- shared memory for jobs that run in a forked child ---------- */

/* Anonymous MAP_SHARED memory: a job's struct lives here so a forked child's results are
 * visible to the parent. Zeroed. NULL on failure. */
void *csys_shared_alloc(size_t size);
void csys_shared_free(void *p, size_t size);

/* ---------- layers ---------- */

enum {
    CSYS_COMPRESSION_NONE = 0,
    CSYS_COMPRESSION_GZIP = 1,
    CSYS_COMPRESSION_ZSTD = 2,
};

/* How whiteouts are represented in a directory tree. */
enum {
    CSYS_TREE_PLAIN = 0,   /* whiteouts applied by deleting; the tree is a flat rootfs */
    CSYS_TREE_OVERLAY = 1, /* whiteouts kept as 0:0 char devices and overlay opaque xattrs */
};

/* How file ownership is recorded when applying a layer. */
enum {
    CSYS_OWNERS_CHOWN = 0, /* chown (root, or root in a mapped user namespace) */
    CSYS_OWNERS_XATTR = 1, /* no chown; non-root owners go to user.rootlesscontainers */
};

#define CSYS_MAX_PATH 4096

typedef struct csys_apply {
    /* in */
    int in_fd;            /* the layer blob (any of the compressions), read to its end */
    int root_fd;          /* directory the layer is applied to */
    int tree;             /* CSYS_TREE_* */
    int owners;           /* CSYS_OWNERS_* */
    /* Paths (relative to the root, no trailing slash) the layer must leave alone: entries at
     * or under them are not written and whiteouts do not remove them (the container isolation
     * level applies images over a container's own root, keeping its mounts and ctr's files).
     * An entry that would replace a directory holding one is an error. NULL/0: none. */
    const char *const *skip;
    int nskip;
    /* out */
    int compression;      /* detected CSYS_COMPRESSION_* */
    unsigned char digest[32];  /* sha256 of every byte read from in_fd */
    unsigned char diff_id[32]; /* sha256 of the uncompressed tar stream */
    uint64_t size;             /* bytes read from in_fd */
    uint64_t tar_size;         /* uncompressed bytes */
    uint64_t entries;
    uint64_t skipped_devices;  /* device nodes that could not be created (rootless) */
    char first_skipped[256];
    uint64_t restricted_devices; /* CSYS_TREE_PLAIN: device nodes made 0600 (root's unpack) */
    char first_restricted[256];
    uint64_t ignored_xattrs;   /* xattrs the kernel refused (EPERM/ENOTSUP) */
    csys_error error;
} csys_apply;

/* Apply a tar layer to root_fd. Every entry path is resolved inside the root
 * (openat2 RESOLVE_IN_ROOT): "..", absolute names, symlinks and hardlinks cannot reach
 * outside it. Returns 0, or -1 with a->error set. Thread-safe (no process-wide state). */
int csys_layer_apply(csys_apply *a);

typedef struct csys_create {
    /* in */
    int root_fd;          /* directory to archive */
    int out_fd;           /* the blob is written here */
    const char *out_name; /* its name, for a write error (NULL: none) */
    int tree;             /* CSYS_TREE_OVERLAY: an overlay upper dir (whiteouts converted) */
    int compression;      /* CSYS_COMPRESSION_* */
    int level;            /* compression level; 0 = default */
    int64_t clamp_mtime;  /* SOURCE_DATE_EPOCH: mtimes after it are clamped; -1 = none */
    /* Ownership translation for a rootless user who has no user namespace mapping:
     * host_uid/host_gid become 0, user.rootlesscontainers xattrs give the image owner. */
    int translate_owners;
    uint32_t host_uid, host_gid;
    /* out */
    unsigned char digest[32];
    unsigned char diff_id[32];
    uint64_t size;
    uint64_t tar_size;
    uint64_t entries;
    csys_error error;
} csys_create;

/* Write root_fd as a deterministic tar layer: entries sorted by name, no atime/ctime,
 * no user/group names, mtimes clamped, gzip header without a timestamp. */
int csys_layer_create(csys_create *c);

/* One entry of a layer made from a list (csys_layer_create_changes): the entry at `path`
 * (relative to root_fd; a directory is one entry, not its contents), or a whiteout for it. */
typedef struct csys_change {
    const char *path;
    int whiteout;
} csys_change;
/* Write the listed changes of the tree at c->root_fd as a layer, in the order given. */
int csys_layer_create_changes(csys_create *c, const csys_change *changes, size_t n);


/* A tree's entries and their metadata, to tell what a command changed in it (the chroot
 * isolation level of ctr build, where there is no overlay upper dir to read). */
typedef struct csys_snapshot csys_snapshot;
/* Walk the tree at root_fd (no symlink followed; `skip`: paths relative to it whose whole
 * subtree is left out, e.g. "proc", "dev", "etc/resolv.conf"). NULL with err set. */
csys_snapshot *csys_snapshot_take(int root_fd, const char *const *skip, int nskip, csys_error *err);
/* What changed from `before` to `after`, as a change list in layer order (parents before
 * children; whiteouts for what is gone, the topmost gone path only). *out is malloc'd (free it
 * with csys_changes_free). Returns the count, or -1. */
long csys_snapshot_diff(const csys_snapshot *before, const csys_snapshot *after, csys_change **out, csys_error *err);
void csys_changes_free(csys_change *changes, long n);
void csys_snapshot_free(csys_snapshot *s);
uint64_t csys_snapshot_count(const csys_snapshot *s);
/* The same as jobs, so that a tree of a user namespace is read in it (csys_job_fn):
 * _save takes the snapshot of root_fd and writes it to snap_fd; _layer takes another, reads
 * the first back from snap_fd and writes the difference as a layer (create.root_fd is the
 * same tree). `entries`: the snapshot's entries, or the layer's. */
typedef struct csys_snapshot_job {
    int root_fd;
    const char *const *skip;
    int nskip;
    int snap_fd;
    csys_create create;
    long entries;
    csys_error error;
} csys_snapshot_job;
int csys_snapshot_job_save(void *arg);
/* An anonymous file for a snapshot (memfd, close-on-exec). -1 with errno. */
int csys_snapshot_file(void);
int csys_snapshot_job_layer(void *arg);

/* Verify that a blob is a readable tar (any compression) without extracting it; fills the
 * same outputs as csys_layer_apply. Used to check imported tarballs. */
int csys_layer_scan(csys_apply *a);

/* Remove a directory tree (no symlink is followed). Used inside the user namespace for trees
 * whose files belong to subordinate ids. Returns 0 or -1 with err set. */
int csys_rmtree_at(int dirfd, const char *name, csys_error *err);
/* Whether `path` is one of `set` or under one of them (paths relative, no trailing slash). */
int csys_path_in(const char *path, const char *const *set, int n);
/* Whether one of `set` is under `path` ("" holds them all). */
int csys_path_holds(const char *path, const char *const *set, int n);
/* Empty the directory `dir` (relative to root_fd; "" is the root itself) of everything but
 * the `keep` paths and the directories that hold them; nothing is followed (no symlink, no
 * other mount: a mount point must be in `keep`). 0, or -1 with err set. */
int csys_clear_tree(int root_fd, const char *dir, const char *const *keep, int nkeep, csys_error *err);
/* The same, adding the disk usage of what was removed to *freed. */
int csys_rmtree_count(int dirfd, const char *name, uint64_t *freed, csys_error *err);

/* Copy a stream, decompressing (auto-detected) and hashing both sides:
 * digest = sha256 of input, diff_id = sha256 of output. out_fd may be -1 (hash only). */
typedef struct csys_decompress {
    int in_fd, out_fd;
    const char *out_name; /* out_fd's name, for a write error (NULL: none) */
    int compression;
    unsigned char digest[32];
    unsigned char diff_id[32];
    uint64_t size, tar_size;
    csys_error error;
} csys_decompress;
int csys_decompress_copy(csys_decompress *d);

/* Copy a stream, compressing (gzip/zstd/none) and hashing both sides:
 * diff_id = sha256 of the input, digest = sha256 of the output. */
typedef struct csys_compress {
    int in_fd, out_fd;
    const char *out_name; /* out_fd's name, for a write error (NULL: none) */
    int compression;
    int level;
    unsigned char digest[32];
    unsigned char diff_id[32];
    uint64_t size, tar_size;
    csys_error error;
} csys_compress;
int csys_compress_copy(csys_compress *c);

/* ---------- user namespaces ---------- */

typedef int (*csys_job_fn)(void *arg);

/* fork(); the child enters a new user namespace (unshare), reports ready, and waits.
 * The parent (the caller) writes the id maps for *pid (newuidmap/newgidmap or
 * csys_write_single_map) and calls csys_userns_release(). The child then takes uid/gid 0
 * in the namespace and runs fn(arg) — C only — and exits with its return value.
 * On any failure before release the child exits 125 after writing a csys_error to
 * err_out (shared memory). Returns 0, or -1 with err set. */
typedef struct csys_userns_child {
    pid_t pid;
    int ready_fd;   /* parent reads 1 byte when the child has unshared */
    int release_fd; /* parent writes 1 byte to let it run; closing it aborts the child */
} csys_userns_child;
/* The child keeps only fds 0-2 and `keep` (the job's own fds): a pipe another thread is
 * writing must not stay open in a child that did not ask for it. */
int csys_userns_fork(csys_job_fn fn, void *arg, const int *keep, int nkeep, csys_error *err_out,
                     csys_userns_child *child, csys_error *err);
/* close every fd >= 3 that is not in keep[] */
void csys_close_fds_except(const int *keep, int nkeep);
int csys_userns_wait_ready(csys_userns_child *child);
int csys_userns_release(csys_userns_child *child);
/* waits for the child; returns its exit code (128+N for a signal) or -1 */
int csys_wait_exit(pid_t pid);

/* write "0 id 1" maps (and setgroups deny) for a child; for a user without subordinate ids */
int csys_write_single_map(pid_t pid, uid_t uid, gid_t gid, csys_error *err);
/* As root: write the maps ("0 100000 65536\n" lines) directly, without newuidmap. */
int csys_write_maps(pid_t pid, const char *uid_map, const char *gid_map, csys_error *err);

/* job wrappers usable as csys_job_fn */
int csys_job_layer_apply(void *arg);   /* arg: csys_apply* */
int csys_job_layer_create(void *arg);  /* arg: csys_create* */
typedef struct csys_rmtree_job {
    int dirfd;
    char name[CSYS_MAX_PATH];
    uint64_t freed;  /* bytes of disk the removed entries used (st_blocks * 512) */
    csys_error error;
} csys_rmtree_job;
int csys_job_rmtree(void *arg);

/* Give dirfd/name (not following a symlink) an owner (container ids inside the user
 * namespace) and permission bits. */
typedef struct csys_chown_job {
    int dirfd;
    char name[256];
    uint32_t uid, gid, mode;
    csys_error error;
} csys_chown_job;
int csys_job_chown(void *arg);

/* Exec a host command (argv NULL-terminated, PATH searched) with every fd above 2 closed on
 * exec. Used by `ctr unshare` inside the user namespace. Returns only on failure. */
typedef struct csys_exec_job {
    char *const *argv;
    csys_error error;
} csys_exec_job;
int csys_job_exec(void *arg);
/* fork(); the child runs fn(arg) (C only) and exits with its result. Returns the pid or -1. */
pid_t csys_fork_job(csys_job_fn fn, void *arg, const int *keep, int nkeep);

/* ---------- small helpers ---------- */
int csys_openat2_in_root(int rootfd, const char *path, int flags, mode_t mode);
/* openat2 beneath rootfd with no symlink followed at all (O_CLOEXEC added); -1 with errno. */
int csys_openat2_beneath(int rootfd, const char *path, int flags);
ssize_t csys_copy_file_range(int in_fd, int out_fd, size_t len);
int csys_pipe_cloexec(int fds[2]);
ssize_t csys_lgetxattr(const char *path, const char *name, void *value, size_t size);
int csys_lsetxattr(const char *path, const char *name, const void *value, size_t size);
void csys_set_error(csys_error *e, int err, const char *stage, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---------- a view of a directory (the build context for RUN --mount=type=bind) ---------- */

/* Put entry `rel` of src_root at the same path under dst_root (its parent must be there).
 * Both sides are resolved beneath their roots with no symlink followed (openat2
 * RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS). A directory is made 0700 (csys_view_finish_dir
 * gives it its mode once its contents are in), a symlink is made with the same target, a
 * regular file is hard-linked — or copied (content, mode, times; owned by the caller) when
 * `copy` is set or the kernel refuses the link (another filesystem, protected_hardlinks).
 * As root the view keeps the source's owners. Other file types are refused. 0, or -1. */
int csys_view_add(int src_root, int dst_root, const char *rel, int copy, csys_error *err);
/* Give a directory of the view (rel "" : dst_root itself, opened O_RDONLY) its source's
 * mode and times. 0, or -1 with err set. */
int csys_view_finish_dir(int src_root, int dst_root, const char *rel, csys_error *err);

/* ---------- plain tar archives of files (image archives: oci-archive, docker-archive) ---------- */

typedef struct csys_tar_writer csys_tar_writer;
/* A tar stream on fd (uncompressed, pax). NULL with err set on failure. */
/* libarchive and libcurl are loaded on first use (csys_lazy.c): call these in the parent
 * before forking a child that uses them. 0, or -1 with err set. In the shipped binary
 * (CSYS_STATIC_LIBS) all but libcurl and ISA-L are linked in and load without fail. */
int csys_load_archive(csys_error *err);
int csys_load_curl(csys_error *err);
/* zstd, gzip's engine (ISA-L, else zlib: ISA-L is optional) and OpenSSL's SHA-256 /
 * libseccomp, likewise (err NULL: a failure aborts). */
int csys_load_codecs(csys_error *err);
int csys_load_crypto(csys_error *err);
int csys_load_seccomp(csys_error *err);

csys_tar_writer *csys_tar_writer_open(int fd, csys_error *err);
int csys_tar_add_dir(csys_tar_writer *w, const char *name, int64_t mtime);
int csys_tar_add_bytes(csys_tar_writer *w, const char *name, const void *data, size_t len, int64_t mtime);
/* Add `size` bytes read from src_fd (from its current offset). */
int csys_tar_add_fd(csys_tar_writer *w, const char *name, int src_fd, uint64_t size, int64_t mtime);
/* One entry with full metadata. type: 'f' file (data, or size bytes read from src_fd), 'd' dir,
 * 'l' symlink, 'h' hardlink (linkname: the earlier entry's name). */
typedef struct csys_tar_entry {
    const char *name;
    char type;
    uint32_t mode;
    int64_t uid, gid;
    int64_t mtime;
    uint64_t size;
    const void *data;
    const char *linkname;
} csys_tar_entry;
int csys_tar_add_entry(csys_tar_writer *w, const csys_tar_entry *e, int src_fd);
/* Finish the archive (on success) and free. Returns 0 or -1. */
int csys_tar_writer_close(csys_tar_writer *w, int finish);
const csys_error *csys_tar_writer_error(csys_tar_writer *w);

/* Read a tar stream (any compression) from in_fd and write each regular file into dest_dirfd
 * as "f<N>", hashing it on the way. Directories are skipped; links and devices are
 * rejected. On success *listing is a malloc'd text, one line per file:
 * "f<N>\t<sha256 hex>\t<size>\t<cleaned entry name>\n"; free it with free(). */
int csys_tar_extract_files(int in_fd, int dest_dirfd, char **listing, csys_error *err);
/* xz and bzip2 (which layers may not be, but ADD and import take): which one in_fd holds
 * (its first bytes, read at offset 0): CSYS_XZ, CSYS_BZIP2, 0 for neither, -1/errno. */
enum { CSYS_XZ = 1, CSYS_BZIP2 = 2 };
int csys_xz_bzip2_kind(int in_fd);
/* Decompress it (read from its current offset) into out_fd with libarchive's own filters
 * (liblzma, libbz2; no program is started). 0, or -1 with err set (stage "decompress": not a
 * valid stream). */
int csys_decompress_xz_bzip2(int in_fd, int out_fd, csys_error *err);
void csys_free(void *p);

/* ---------- HTTP (libcurl) ---------- */

/* One client per thread: it keeps its connections alive between requests. */
typedef struct csys_http csys_http;
csys_http *csys_http_new(void);
void csys_http_free(csys_http *h);

typedef struct csys_http_request {
    const char *method;              /* GET, HEAD, PUT, POST, PATCH, DELETE */
    const char *url;
    const char *const *headers;      /* NULL-terminated "Name: value" lines, or NULL */
    const void *body;                /* a body from memory … */
    size_t body_len;
    int body_fd;                     /* … or body_size bytes from body_fd (>= 0) at its offset */
    uint64_t body_size;
    int has_body;
    int verify_tls;                  /* 0: do not verify the server's certificate */
    const char *ca_pem;              /* PEM bundle replacing the default CA store, or NULL */
    size_t ca_pem_len;
    const char *client_cert;         /* PEM files, or NULL */
    const char *client_key;
    long connect_timeout_ms;         /* connecting (TCP and TLS) may take this long */
    long stall_ms;                   /* give up when no byte arrives or leaves for this long (0: never) */
    int64_t give_up_at_ms;           /* and at this CLOCK_MONOTONIC time (ms; 0: never), unless body
                                      * bytes move: each moves it to idle_ms after that byte */
    long idle_ms;
    int follow_redirects;
    /* the body of a 2xx response: */
    size_t max_body;                 /* keep up to this many bytes in memory (0: keep none) */
    int out_fd1, out_fd2;            /* and write it to these (-1: none) */
    csys_sha256 *hash;               /* and hash it (NULL: no) */
    volatile uint64_t *progress;     /* body bytes so far, for progress displays */
    uint64_t resume_from;            /* ask for bytes from here (Range); a server that answers
                                      * 200 instead of 206 has its first resume_from bytes
                                      * skipped, so the output continues where it stopped */
    uint64_t limit;                  /* more 2xx body than this stops the transfer (too_large); 0: none */
} csys_http_request;

typedef struct csys_http_response {
    long status;
    char *headers;                   /* malloc'd header lines of the final response */
    unsigned char *body;             /* malloc'd body kept in memory (non-2xx: up to 64 KiB) */
    size_t body_len;
    uint64_t received;               /* body bytes of a 2xx response passed on (after a skip) */
    int partial;                     /* the server answered a Range request with 206 */
    int too_large;                   /* a 2xx body exceeded max_body (transfer stopped) */
    int write_failed;                /* writing to out_fd1/out_fd2 failed (errno in os_errno) */
    int os_errno;
    int curl_code;                   /* 0 = the exchange completed (look at status) */
    int stalled;                     /* given up by stall_ms or give_up_at_ms */
    int64_t last_data_ms;            /* CLOCK_MONOTONIC ms of the last body byte received or sent (0: none) */
    char error[512];
} csys_http_response;

int csys_http_perform(csys_http *h, const csys_http_request *req, csys_http_response *resp);
void csys_http_response_free(csys_http_response *resp);
/* classification of a curl failure: 1 resolve, 2 connect refused/unreachable, 3 TLS
 * certificate, 4 other TLS, 5 timeout/stall, 6 connection cut/reset, 0 other */
int csys_http_error_kind(int curl_code);
/* CLOCK_MONOTONIC in milliseconds (the clock of give_up_at_ms and last_data_ms). */
int64_t csys_monotonic_ms(void);

/* With on = 1, from now on the first SIGINT, SIGTERM or SIGHUP (an ignored one stays ignored, as under
 * nohup) only notes the signal (csys_signals_init's thread receives them): transfers see it and
 * stop, so the command's own error path removes its partial writes. A second one ends the
 * process at once. on = 0: signals act as usual again. */
void csys_catch_stop_signals(int on);
/* The signal that asked ctr to stop, or 0. */
int csys_stop_signal(void);

#ifdef __cplusplus
}
#endif

#include "csys_container.h"
#endif
