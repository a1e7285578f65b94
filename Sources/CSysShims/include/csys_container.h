/*
 * Running a container: Swift computes a flat plan; csys_container_clone() clones the process
 * into its namespaces and the child runs one ordered setup in C only (no allocation, no
 * locks), reporting failures as a csys_error over the sync socket:
 *
 *   wait for the parent (id maps, cgroup, network) → become root in the user namespace →
 *   cgroup namespace → mounts (overlay root, /proc, /dev, /sys, /etc files, volumes) →
 *   pivot_root → masked and read-only paths → hostname, lo up → cwd → rlimits → groups, gid,
 *   uid, capabilities → no_new_privs → seccomp → signals reset, fds closed → exec.
 */
#ifndef CSYS_CONTAINER_H
#define CSYS_CONTAINER_H

#include "csys.h"
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    CSYS_MNT_BIND = 1,   /* source (host path) onto target */
    CSYS_MNT_TMPFS = 2,  /* data: tmpfs options */
    CSYS_MNT_OVERLAY = 3, /* data: "lowerdir=A:B[,userxattr]", read-only (ctr build's RUN --mount from a stage) */
};

typedef struct csys_mount {
    int kind;
    const char *source;
    const char *target;   /* absolute path inside the container, resolved in its root */
    const char *data;     /* tmpfs options ("size=64m,mode=1777") */
    int readonly;
    int recursive;
    int is_file;          /* the source is a file: the target is created as a file */
    unsigned long flags;  /* MS_NOSUID | MS_NODEV | MS_NOEXEC for tmpfs */
} csys_mount;

typedef struct csys_rlimit {
    int resource;
    uint64_t soft, hard;
} csys_rlimit;

typedef struct csys_container_plan {
    /* namespaces */
    int userns;                /* clone into a new user namespace (the parent writes its maps) */
    int join_userns_fd;        /* >= 0: join this user namespace instead (the user's shared one,
                                * already mapped: see csys_userns_keeper_start); userns is 0 */
    int netns;                 /* a new network namespace (not --network host) */
    int cgroupns;              /* unshare a cgroup namespace once in its cgroup */
    int setgroups;             /* setgroups(2) is allowed (maps not written with setgroups=deny) */
    int pdeathsig;             /* signal when the parent dies (foreground runs), 0 for none */

    /* root filesystem */
    const char *rootfs;        /* where the overlay is mounted (a directory of the state dir) */
    const char *const *lowers; /* overlay lower dirs, topmost first */
    int nlowers;
    const char *upper, *work;
    int userxattr;             /* overlay option for user namespaces */
    int idmapped_lowers;       /* root with a user namespace: the release brings one idmapped
                                * tree per lower dir (csys_idmapped_tree), attached over it */
    int fuse;                  /* 0: kernel overlayfs only; 1: fuse-overlayfs where the kernel
                                * refuses; 2: fuse-overlayfs always (CTR_OVERLAY=fuse) */
    const char *fuse_missing;  /* with fuse 0: why there is no fallback (for the error) */
    int fuse_dev_fd;           /* /dev/fuse opened by ctr (root without a user namespace: the
                                * devices cgroup the child is in by then refuses it), or -1 */
    const char *overlay_data;  /* legacy mount(2) option string, if the new API is refused */
    int readonly_rootfs;
    int mknod;                 /* device nodes can be created (root, no user namespace) */
    int own_sysfs;             /* a network namespace of our own: mount sysfs (else bind /sys) */
    int bind_proc;             /* bind the /proc we see (read-only) instead of mounting one: a
                                * CI container's masked /proc refuses a fresh procfs */
    int keep_hostname;         /* no sethostname (refused, e.g. seccomp without CAP_SYS_ADMIN) */
    const char *root_tree;     /* the root is this real tree, bound (no overlay: overlayfs cannot
                                * take an upper dir on the store's filesystem, a CI container's
                                * own overlayfs root); writes go to the tree itself */
    const char *chroot_dir;    /* the chroot isolation level: no namespace and no mount at all,
                                * the process is chrooted into this real tree (ctr build only) */
    int devpts_gid5;           /* gid 5 (tty) is mapped: devpts gid=5 */
    const char *etc_hosts, *etc_hostname, *etc_resolv; /* host files bound onto /etc/…, or NULL */
    const csys_mount *mounts;  /* volumes and --tmpfs, in order */
    int nmounts;
    const char *const *masked;
    int nmasked;
    const char *const *readonly_paths;
    int nreadonly;

    /* process */
    const char *hostname;
    const char *cwd;
    const char *const *argv;   /* NULL-terminated */
    const char *const *envp;   /* NULL-terminated */
    const char *path_env;      /* PATH to search for argv[0] */
    uint32_t uid, gid;
    const gid_t *groups;
    int ngroups;
    uint64_t caps;             /* capability bitmask kept (bounding, and effective/permitted for uid 0) */
    int cap_last;              /* /proc/sys/kernel/cap_last_cap */
    int no_new_privs;
    const unsigned char *seccomp; /* BPF program (struct sock_filter[]), NULL: unconfined */
    size_t seccomp_len;
    const csys_rlimit *rlimits;
    int nrlimits;
    int tty;                   /* stdio is a terminal: new session, controlling tty */
    int stdio[3];              /* fds to become 0, 1, 2 (-1: keep the inherited one) */
    int init;                  /* pid 1 is a minimal init that forwards signals and reaps */
    int stub_fd;               /* csys_exec_stub_open(): the command is exec'd through it */

    /* the child's end of the sync socket (SOCK_SEQPACKET, CLOEXEC) */
    int sync_fd;
} csys_container_plan;

/* ---- the exec stub (stub/exec_stub.c) ----
 * A container's command is never exec'd by a copy of ctr: the last step execs the stub from a
 * sealed memfd (CLOEXEC), which execs the command, so /proc/self/exe inside the container is
 * never the host's ctr binary (runc CVE-2019-5736). Open one per container, before the clone. */
int csys_exec_stub_open(csys_error *err);
/* The path execve takes for `cmd`: itself if it has a '/', else PATH searched (execvp's way) as
 * the calling user; out gets it. 0, or -ENOENT / -EACCES / -ENAMETOOLONG. */
int csys_resolve_command(const char *cmd, const char *path_env, char *out, size_t outlen);
/* Exec the stub (mode "init" with init) to exec `path` with argv/envp; sync_fd is kept open
 * across this exec and reported to by the stub if the command's exec fails. Returns only on
 * failure (errno). No allocation: for use after clone/fork. */
void csys_exec_via_stub(int stub_fd, int sync_fd, int init, const char *path, const char *const *argv, const char *const *envp);

/* Start the keeper of a user's shared user namespace: a process in a new user namespace that
 * waits for `release_fd` (its maps written by the caller through newuidmap/newgidmap), then
 * becomes the exec stub's "pause" mode in a session of its own: it holds the namespace until
 * `state_path` is gone (or SIGTERM), with no capabilities. Containers then join that namespace
 * (csys_container_plan.join_userns_fd), which saves two setuid programs per start. Returns its
 * pid; *release_fd gets the pipe to write one byte to (or close, to make it exit). */
pid_t csys_userns_keeper_start(int stub_fd, const char *state_path, int *release_fd, csys_error *err);

/* Clone the container's first process. Returns its pid (in our pid namespace), or -1. */
pid_t csys_container_clone(const csys_container_plan *p, csys_error *err);

/* Parent side of the sync socket: let the child go on, then wait until it has exec'd (the
 * socket closes: 0) or failed (-1, err filled from the child's report). With the fuse
 * fallback the child stops once more, after mounting /dev/fuse on its root: 1, *fuse_fd is
 * that connection (CLOEXEC; the caller starts fuse-overlayfs on it, closes it and releases
 * again). fuse_fd may be NULL when the plan has no fuse fallback. timeout_ms > 0: give up
 * after that long without an answer (stage "timeout"); the caller kills the child. */
int csys_container_release(int parent_fd, csys_error *err, int *fuse_fd, int timeout_ms);
/* The same, the first 'g' carrying fds (SCM_RIGHTS, at most CSYS_MAX_PASSED_FDS). */
#define CSYS_MAX_PASSED_FDS 250
int csys_container_release_with(int parent_fd, const int *fds, int nfds, csys_error *err, int *fuse_fd, int timeout_ms);

/* A detached copy of the tree at `path` whose ids are shifted through the user namespace
 * `userns_fd` (an idmapped mount: host 0 shows as that namespace's root). Returns its fd. */
int csys_idmapped_tree(const char *path, int userns_fd, csys_error *err);

/* Start fuse-overlayfs serving `fuse_fd` (a mounted /dev/fuse connection): a new session,
 * in the user namespace `userns_fd` (-1: stay in ours), stdin /dev/null, output appended to
 * log_path, only the connection (as fd 3) open. argv ends with "/dev/fd/3". Returns its pid. */
pid_t csys_fuse_daemon_start(int userns_fd, int fuse_fd, const char *const *argv, const char *log_path, csys_error *err);

/* Wait for a child; exit code, or 128+signal; -1 on error. */
int csys_wait_status(pid_t pid);

/* ---- exec into a running container ---- */
typedef struct csys_exec_plan {
    int ns_fds[7];             /* user, mnt, uts, ipc, net, cgroup, pid (-1: not joined) */
    int root_fd;               /* /proc/PID/root of the container */
    const char *cwd;
    const char *const *argv;
    const char *const *envp;
    const char *path_env;
    uint32_t uid, gid;
    const gid_t *groups;
    int ngroups;
    int setgroups;
    uint64_t caps;
    int cap_last;
    int no_new_privs;
    const unsigned char *seccomp;
    size_t seccomp_len;
    int tty;
    int stdio[3];
    int sync_fd;               /* child end: error reports; the inner pid is sent first */
    int stub_fd;               /* csys_exec_stub_open() */
} csys_exec_plan;

/* Fork a helper that joins the namespaces and forks the process (so it is in the container's
 * pid namespace); returns the helper's pid. The helper exits with the process's status. */
pid_t csys_container_exec(const csys_exec_plan *p, csys_error *err);

/* Read what the helper of csys_container_exec says on `sync` (the parent's end): the process's
 * pid, then EOF once it exec'd. Returns that pid (`helper` when the helper said nothing), or
 * -1 with the failure in *err (kind CSYS_ERR_EXEC when the command could not be executed). */
pid_t csys_exec_started(int sync, pid_t helper, csys_error *err);

/* ---- terminals ---- */
/* Open a new pty: *master and *slave (CLOEXEC); copies the window size of `from` (a tty fd, or -1). */
int csys_openpty(int *master, int *slave, int from, csys_error *err);
/* Put `fd` in raw mode; saves the old state for csys_tty_restore. */
int csys_tty_raw(int fd);
void csys_tty_restore(int fd);
/* Copy in→master and master→out until the master hangs up (the container exited). */
int csys_tty_relay(int master, int in, int out);
/* Copy the window size of `from` to `to`. */
void csys_tty_copy_size(int from, int to);

/* ---- stdio: never a host file in the container ----
 * A container given a file of the host as stdin/stdout/stderr (`ctr run … >> out.txt`) could
 * reopen it through /proc/self/fd/N (read what was there before, write elsewhere in it) and
 * chmod it. Only /dev/null, a terminal and an anonymous pipe are passed as they are; anything
 * else goes through a pipe that ctr copies (as podman through conmon). */
int csys_stdio_passable(int fd);
typedef struct csys_relay csys_relay;
/* A thread copying from → to until EOF, a write error or csys_relay_finish(drain 0); at the end
 * it closes what it was told to (the container's pipe end: EOF on its stdin, EPIPE on its output). */
csys_relay *csys_relay_start(int from, int to, int close_from, int close_to, csys_error *err);
/* drain: copy what the source holds now (output, once the container's process exited: a
 * process it left running may keep the pipe open), then stop; else stop now (input). Frees r. */
void csys_relay_finish(csys_relay *r, int drain);

/* ---- signals ---- */
/* Block the signals ctr forwards (INT TERM HUP QUIT USR1 USR2 WINCH) in this thread (call
 * before any other thread exists) and start a thread that handles them: forwarded to the
 * process set with csys_signals_forward_to(), else the default action. */
void csys_signals_init(void);
void csys_signals_forward_to(pid_t pid, int tty_master);
/* Restore the default mask in a child (before exec). */
void csys_signals_reset_child(void);

/* ---- detached containers ---- */
typedef struct csys_monitor_args {
    const char *log_path;      /* container output, one line per record with a timestamp */
    const char *exit_path;     /* written when the container exits: "CODE UNIX_NS\n" */
    int out_fd, err_fd;        /* read ends of the container's stdout/stderr pipes (-1: none) */
    int tty_master;            /* with -t: the pty master (out_fd/err_fd unused) */
    int report_fd;             /* the monitor writes the container pid here, then closes it */
    const char *const *on_exit_argv; /* run after the exit is recorded (e.g. ctr rm), or NULL */
} csys_monitor_args;

/* Fork a monitor (a new session, no controlling tty) that clones the container as its child,
 * reports its pid on report_fd, copies its output to the log, and records its exit.
 * Returns the monitor's pid. */
pid_t csys_monitor_start(const csys_container_plan *p, const csys_monitor_args *m, csys_error *err);

/* Remove the trees `names` (entries of dirfd, at most 8) in the exec stub's "rmtree" mode,
 * started vfork-style (no copy of our memory), so the caller can go on (a `--rm` container's
 * dirs, after it exited): as itself, then what is left as root of the user namespace
 * userns_fd (>= 0: files of subordinate ids). Returns its pid once it has exec'd. */
pid_t csys_remove_detached(int stub_fd, int dirfd, const char *const *names, int n, int userns_fd);

/* The uid owning the user namespace `fd` (NS_GET_OWNER_UID). 0 or -1. */
int csys_ns_owner_uid(int fd, uid_t *uid);

/* /proc/PID/stat field 22 (start time in clock ticks), 0 if gone */
uint64_t csys_proc_starttime(pid_t pid);

/* ctr build: a user-namespace helper that opens paths for the parent (SCM_RIGHTS). */
typedef struct csys_fd_server {
    int sock;
    csys_error error;
} csys_fd_server;
int csys_job_fd_server(void *arg);
/* Ask the helper for an fd of path (open flags; O_NOFOLLOW and O_CLOEXEC are added). -1/errno. */
int csys_fd_request(int sock, const char *path, int flags);
int csys_fd_readlink(int fd, char *buf, size_t len);
long csys_fgetxattr(int fd, const char *name, void *value, size_t size);

/* Start the program at path (HostOS.Command finds it and waits for it): posix_spawn, with
 * exactly the fds given: fds[i] becomes fd i (-1: /dev/null), every other fd is closed; the
 * signal mask empty and every signal at its default action; flags: a process group
 * (CSYS_SPAWN_PGROUP) or a session (CSYS_SPAWN_SESSION) of its own; dir: its working directory
 * (NULL: ours); envp NULL: our environment. 0 with *pid set, or an errno value (the exec's
 * own too: ENOENT, EACCES, ENOEXEC). */
#define CSYS_SPAWN_MAX_FDS 64
#define CSYS_SPAWN_PGROUP 1
#define CSYS_SPAWN_SESSION 2
int csys_spawn(const char *path, char *const argv[], char *const envp[], const int *fds, int nfds, int flags,
               const char *dir, pid_t *pid);

#ifdef __cplusplus
}
#endif
#endif
