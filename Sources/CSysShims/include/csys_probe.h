/*
 * What this process may do to sandbox a command (the facts behind the isolation levels).
 * Every field is 0 when it worked, the errno that refused it, or -1 when it was not tried
 * (an earlier step failed, or it does not apply).
 */
#ifndef CSYS_PROBE_H
#define CSYS_PROBE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct csys_ns_probe {
    int tried;
    int userns;      /* unshare(CLONE_NEWUSER) */
    int idmap;       /* writing its own single id map in it */
    int userns_caps; /* CAP_SYS_ADMIN in it (EPERM: none, as Ubuntu 24.04's AppArmor gives) */
    int mountns;     /* unshare(CLONE_NEWNS) */
    int tmpfs;       /* a tmpfs mount */
    int mknod;       /* mknod c 1:3 on it */
    int overlay;     /* overlayfs (userxattr in a user namespace) */
    int uts;         /* unshare(CLONE_NEWUTS) */
    int hostname;    /* sethostname in it */
    int ipcns;
    int cgroupns;
    int netns;
    int sysfs;       /* mounting sysfs in that network namespace */
    int pidns;
    int procfs;      /* mounting a fresh procfs (refused under a masked /proc) */
    int overlay_store; /* overlayfs with its upper dir where the store is (refused on an
                        * overlayfs: a CI container's own root) */
} csys_ns_probe;

typedef struct csys_sandbox_probe {
    csys_ns_probe nested; /* in a new user namespace of our own */
    csys_ns_probe direct; /* as we are, without one (root only) */
    int chroot;           /* chroot(2) as we are (root only) */
    uint64_t caps;        /* our effective capabilities */
    int uid;              /* our effective uid */
    int seccomp_mode;     /* /proc/self/status Seccomp: 0 none, 2 filter */
    long max_user_namespaces; /* -1: unknown */
    int in_userns;        /* we are in a user namespace other than the initial one */
} csys_sandbox_probe;

/* Our effective capabilities (one capget). */
uint64_t csys_probe_effective_caps(void);

/* Run the probes (two or three short-lived children). 0, or -1 if none could run.
 * store_dir: a directory on the store's filesystem for the overlay_store probe (NULL: none). */
int csys_probe_sandbox(csys_sandbox_probe *out, const char *store_dir);

#ifdef __cplusplus
}
#endif
#endif
