/*
 * The container's first process, from clone to exec. Everything after the clone runs here,
 * in C, without allocating: the plan was built by Swift in the parent.
 */
#include "include/csys_container.h"
#include "csys_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/openat2.h>
#include <linux/sched.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <unistd.h>

#ifndef CLONE_NEWCGROUP
#define CLONE_NEWCGROUP 0x02000000
#endif

/* ---------------------------------------------------------------- errors */

static void report(int fd, csys_error *e) {
    if (fd >= 0) {
        ssize_t n;
        do n = write(fd, e, sizeof *e);
        while (n < 0 && errno == EINTR);
    }
}

#define FAIL_KIND(kind_, stage, ...)                              \
    do {                                                          \
        int e_ = errno;                                           \
        csys_error err_;                                          \
        memset(&err_, 0, sizeof err_);                            \
        csys_set_error(&err_, e_, stage, __VA_ARGS__);            \
        err_.kind = kind_;                                        \
        report(p->sync_fd, &err_);                                \
        _exit(125);                                               \
    } while (0)
#define FAIL(stage, ...) FAIL_KIND(CSYS_ERR_SYSTEM, stage, __VA_ARGS__)
/* refused by the environment (EPERM, EACCES): another isolation level may do without it */
#define FAIL_REFUSED(stage, ...) FAIL_KIND(errno == EPERM || errno == EACCES ? CSYS_ERR_REFUSED : CSYS_ERR_SYSTEM, stage, __VA_ARGS__)
/* the command could not be executed: 126 or 127 for the caller, as docker */
#define FAIL_EXEC(...) FAIL_KIND(CSYS_ERR_EXEC, "exec", __VA_ARGS__)

/* ---------------------------------------------------------------- paths in the root */

/* Open `path` (inside the container) relative to rootfd, creating what is missing: every
 * directory on the way and, for the last component, a directory (make_dir) or an empty file
 * (make_file). Symlinks met on the way are followed inside the root, one component at a time
 * (a dangling one has its target created inside the root, as runc does), and ".." never goes
 * above it. No allocation: fixed buffers and a stack of directory fds. Returns O_PATH or -1. */
#define MAX_DEPTH 128
static int open_in_root(int rootfd, const char *path, int make_file, int make_dir) {
    char queue[CSYS_MAX_PATH * 2]; /* the components still to walk, '/'-separated */
    size_t qlen = strlen(path);
    if (qlen >= sizeof queue) { errno = ENAMETOOLONG; return -1; }
    memcpy(queue, path, qlen + 1);
    size_t qpos = 0;
    int stack[MAX_DEPTH];
    int depth = 0;
    stack[depth++] = fcntl(rootfd, F_DUPFD_CLOEXEC, 3);
    if (stack[0] < 0) return -1;
    int links = 0;
    int result = -1;
    for (;;) {
        while (qpos < qlen && queue[qpos] == '/') qpos++;
        if (qpos >= qlen) { /* walked everything: the current directory is the target */
            result = fcntl(stack[depth - 1], F_DUPFD_CLOEXEC, 3);
            break;
        }
        char comp[256];
        size_t start = qpos;
        while (qpos < qlen && queue[qpos] != '/') qpos++;
        size_t clen = qpos - start;
        if (clen >= sizeof comp) { errno = ENAMETOOLONG; break; }
        memcpy(comp, queue + start, clen);
        comp[clen] = 0;
        size_t rest = qpos;
        while (rest < qlen && queue[rest] == '/') rest++;
        int last = rest >= qlen;
        if (!strcmp(comp, ".")) continue;
        if (!strcmp(comp, "..")) {
            if (depth > 1) close(stack[--depth]);
            continue;
        }
        int cur = stack[depth - 1];
        int fd = openat(cur, comp, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT) {
            int rc;
            if (last && make_file) {
                rc = openat(cur, comp, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
                if (rc >= 0) close(rc);
            } else if (!last || make_dir) {
                rc = mkdirat(cur, comp, 0755);
            } else {
                errno = ENOENT;
                break;
            }
            if (rc < 0 && errno != EEXIST) break;
            fd = openat(cur, comp, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        }
        if (fd < 0) break;
        struct stat st;
        if (fstat(fd, &st) < 0) { close(fd); break; }
        if (S_ISLNK(st.st_mode)) {
            char target[CSYS_MAX_PATH];
            ssize_t n = readlinkat(fd, "", target, sizeof target - 1);
            close(fd);
            if (n < 0 || ++links > 40) { if (n >= 0) errno = ELOOP; break; }
            target[n] = 0;
            /* queue = target + "/" + the rest */
            size_t restlen = qlen - rest;
            if ((size_t)n + 1 + restlen >= sizeof queue) { errno = ENAMETOOLONG; break; }
            memmove(queue + n + 1, queue + rest, restlen + 1);
            memcpy(queue, target, (size_t)n);
            queue[n] = '/';
            qlen = (size_t)n + 1 + restlen;
            qpos = 0;
            if (target[0] == '/') /* absolute: from the root again */
                while (depth > 1) close(stack[--depth]);
            continue;
        }
        if (last) {
            result = fd;
            break;
        }
        if (!S_ISDIR(st.st_mode)) { close(fd); errno = ENOTDIR; break; }
        if (depth == MAX_DEPTH) { close(fd); errno = ELOOP; break; }
        stack[depth++] = fd;
    }
    int e = errno;
    while (depth > 0) close(stack[--depth]);
    errno = e;
    return result;
}

static const char *fdpath(int fd, char *buf, size_t n) {
    snprintf(buf, n, "/proc/self/fd/%d", fd);
    return buf;
}

/* ---------------------------------------------------------------- mounts */

static int attr_ro(int fd, int recursive) {
    struct mount_attr a;
    memset(&a, 0, sizeof a);
    a.attr_set = MOUNT_ATTR_RDONLY;
    return mount_setattr(fd, "", AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0), &a, sizeof a);
}

/* Bind `source` onto the target fd (a path in the root, opened O_PATH). nodev: device nodes
 * under it do not open (volumes: only the container's own /dev may hold working devices). */
static int bind_onto_nodev(const char *source, int target, int recursive, int readonly, int nodev) {
    int tree = open_tree(AT_FDCWD, source, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (recursive ? AT_RECURSIVE : 0));
    if (tree < 0) return -1;
    struct mount_attr a;
    memset(&a, 0, sizeof a);
    a.attr_set = (readonly ? MOUNT_ATTR_RDONLY : 0) | (nodev ? MOUNT_ATTR_NODEV : 0);
    if (a.attr_set && mount_setattr(tree, "", AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0), &a, sizeof a) < 0) {
        int e = errno;
        close(tree);
        errno = e;
        return -1;
    }
    int rc = move_mount(tree, "", target, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
    int e = errno;
    close(tree);
    errno = e;
    return rc;
}

static int bind_onto(const char *source, int target, int recursive, int readonly) {
    return bind_onto_nodev(source, target, recursive, readonly, 0);
}

/* Mount a pseudo filesystem onto the target fd. */
static int fs_onto(const char *type, const char *data, unsigned long flags, int target) {
    char tp[64];
    return mount(type, fdpath(target, tp, sizeof tp), type, flags, data);
}

/* The kernel refuses overlayfs (or CTR_OVERLAY=fuse): mount a FUSE connection on the root
 * ourselves, inside our namespaces, and hand it to the parent, which starts fuse-overlayfs on
 * it in our user namespace (outside our pid and mount namespaces: pivot_root and the end of
 * the container leave it alone, and it exits when the last user of the mount is gone). */
static void mount_fuse(const csys_container_plan *p, int kernel_errno) {
    int fd = p->fuse_dev_fd >= 0 ? p->fuse_dev_fd : open("/dev/fuse", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (kernel_errno)
            FAIL("overlay", "the kernel refuses overlayfs here (%s), and /dev/fuse cannot be opened for fuse-overlayfs: %s",
                 strerror(kernel_errno), strerror(e));
        FAIL("overlay", "cannot open /dev/fuse for fuse-overlayfs: %s", strerror(e));
    }
    char opts[160];
    snprintf(opts, sizeof opts, "fd=%d,rootmode=40000,user_id=0,group_id=0,allow_other,default_permissions", fd);
    if (mount("fuse-overlayfs", p->rootfs, "fuse.fuse-overlayfs", MS_NODEV, opts) < 0)
        FAIL("overlay", "cannot mount a fuse filesystem on the root: %s", strerror(errno));
    /* "need-fuse" with the connection: the parent answers 'g' once the daemon runs */
    csys_error req;
    memset(&req, 0, sizeof req);
    strcpy(req.stage, "need-fuse");
    ssize_t n = csys_send_with_fds(p->sync_fd, &req, sizeof req, &fd, 1, 0);
    close(fd); /* the daemon holds the connection now: if it dies, the mount says so */
    if (n < 0) FAIL("overlay", "cannot pass the fuse connection to ctr: %s", strerror(errno));
    char go;
    do n = read(p->sync_fd, &go, 1);
    while (n < 0 && errno == EINTR);
    if (n != 1) _exit(125);
    struct stat st;
    if (stat(p->rootfs, &st) < 0) FAIL("overlay", "fuse-overlayfs does not serve the root filesystem: %s", strerror(errno));
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        FAIL("overlay", "fuse-overlayfs serves a root that is not a directory");
    }
}

/* fds that came with the parent's go (idmapped lower trees); the child's own memory */
static int passed[CSYS_MAX_PASSED_FDS];
static int npassed;

static void mount_overlay(const csys_container_plan *p) {
    if (p->root_tree) {
        int t = open(p->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (t < 0 || bind_onto_nodev(p->root_tree, t, 1, 0, 1) < 0)
            FAIL("mount", "cannot bind the root tree %s: %s", p->root_tree, strerror(errno));
        close(t);
        return;
    }
    if (p->idmapped_lowers) {
        /* each layer, ids shifted, over its own path (in our mount namespace only) */
        if (npassed != p->nlowers) {
            errno = EINVAL;
            FAIL("overlay", "expected %d idmapped layers from ctr, got %d", p->nlowers, npassed);
        }
        for (int i = 0; i < p->nlowers; i++) {
            if (move_mount(passed[i], "", AT_FDCWD, p->lowers[i], MOVE_MOUNT_F_EMPTY_PATH) < 0)
                FAIL("overlay", "cannot attach the idmapped layer %s: %s", p->lowers[i], strerror(errno));
            close(passed[i]);
        }
    }
    if (p->fuse == 2) {
        mount_fuse(p, 0);
        return;
    }
    int fs = fsopen("overlay", FSOPEN_CLOEXEC);
    int ok = fs >= 0;
    for (int i = 0; ok && i < p->nlowers; i++)
        ok = fsconfig(fs, FSCONFIG_SET_STRING, "lowerdir+", p->lowers[i], 0) == 0;
    if (ok && p->upper) ok = fsconfig(fs, FSCONFIG_SET_STRING, "upperdir", p->upper, 0) == 0;
    if (ok && p->work) ok = fsconfig(fs, FSCONFIG_SET_STRING, "workdir", p->work, 0) == 0;
    if (ok && p->userxattr) ok = fsconfig(fs, FSCONFIG_SET_FLAG, "userxattr", NULL, 0) == 0;
    if (ok) ok = fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) == 0;
    if (ok) {
        /* nodev: a device node shipped in an image does not open (as root without a user
         * namespace it would be the host's device); the container's /dev is its own tmpfs */
        int m = fsmount(fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NODEV);
        if (m >= 0 && move_mount(m, "", AT_FDCWD, p->rootfs, MOVE_MOUNT_F_EMPTY_PATH) == 0) {
            close(m);
            close(fs);
            return;
        }
        if (m >= 0) close(m);
    }
    int e = errno; /* the new API's answer says more than the legacy one (truncated options) */
    int tried_new = fs >= 0;
    if (fs >= 0) close(fs);
    /* older kernels: the whole option string at once */
    if (mount("overlay", p->rootfs, "overlay", MS_NODEV, p->overlay_data) == 0) return;
    if (!tried_new) e = errno;
    /* the refusals fuse-overlayfs is for: not allowed (a user namespace before 5.11), not
     * supported (no overlay module, an upper fs it cannot use), too many layers. Anything
     * else (a missing layer dir) is a problem of ours that fuse would only hide. */
    int refused = e == EPERM || e == EINVAL || e == ENODEV || e == EOPNOTSUPP || p->nlowers > 500;
    if (p->fuse == 1 && refused) {
        mount_fuse(p, e);
        return;
    }
    errno = e;
    if (!refused) FAIL("overlay", "cannot mount the overlay root filesystem: %s", strerror(e));
    /* refused: ctr run takes a root of copied files instead (the probes say why) */
    FAIL_KIND(CSYS_ERR_REFUSED, "overlay",
              "cannot mount the overlay root filesystem: %s (the kernel refuses overlayfs here%s, and there is no fuse-overlayfs fallback: %s)",
              strerror(e),
              p->nlowers > 500 ? ": it stacks at most 500 layers" : e == EINVAL ? ", for instance with its upper dir on an overlayfs" : "",
              p->fuse_missing ? p->fuse_missing : "not enabled");
}

static const struct { const char *name; unsigned maj, min; } devices[] = {
    {"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0},
};

static void setup_dev(const csys_container_plan *p, int rootfd) {
    int dev = open_in_root(rootfd, "/dev", 0, 1);
    if (dev < 0) FAIL("mount", "cannot create /dev: %s", strerror(errno));
    if (fs_onto("tmpfs", "mode=755,size=65536k", MS_NOSUID | MS_STRICTATIME, dev) < 0)
        FAIL_REFUSED("mount", "cannot mount /dev: %s", strerror(errno));
    close(dev);
    for (size_t i = 0; i < sizeof devices / sizeof devices[0]; i++) {
        char path[64], host[64];
        snprintf(path, sizeof path, "/dev/%s", devices[i].name);
        snprintf(host, sizeof host, "/dev/%s", devices[i].name);
        if (p->mknod) {
            int d = csys_openat2_in_root(rootfd, "/dev", O_PATH | O_DIRECTORY, 0);
            if (d < 0 || mknodat(d, devices[i].name, S_IFCHR | 0666, makedev(devices[i].maj, devices[i].min)) < 0)
                FAIL_REFUSED("mount", "cannot create %s: %s", path, strerror(errno));
            fchmodat(d, devices[i].name, 0666, 0);
            close(d);
        } else {
            int t = open_in_root(rootfd, path, 1, 0);
            if (t < 0 || bind_onto(host, t, 0, 0) < 0)
                FAIL_REFUSED("mount", "cannot bind %s: %s", host, strerror(errno));
            close(t);
        }
    }
    int pts = open_in_root(rootfd, "/dev/pts", 0, 1);
    if (pts < 0 || fs_onto("devpts", p->devpts_gid5 ? "newinstance,ptmxmode=0666,mode=0620,gid=5" : "newinstance,ptmxmode=0666,mode=0620",
                           MS_NOSUID | MS_NOEXEC, pts) < 0)
        FAIL("mount", "cannot mount /dev/pts: %s", strerror(errno));
    close(pts);
    int d = csys_openat2_in_root(rootfd, "/dev", O_PATH | O_DIRECTORY, 0);
    if (d < 0) FAIL("mount", "cannot open /dev: %s", strerror(errno));
    symlinkat("pts/ptmx", d, "ptmx");
    symlinkat("/proc/self/fd", d, "fd");
    symlinkat("/proc/self/fd/0", d, "stdin");
    symlinkat("/proc/self/fd/1", d, "stdout");
    symlinkat("/proc/self/fd/2", d, "stderr");
    close(d);
    int shm = open_in_root(rootfd, "/dev/shm", 0, 1);
    if (shm < 0 || fs_onto("tmpfs", "mode=1777,size=65536k", MS_NOSUID | MS_NODEV | MS_NOEXEC, shm) < 0)
        FAIL("mount", "cannot mount /dev/shm: %s", strerror(errno));
    close(shm);
    /* with -t: the terminal (a pty of the host's devpts, absent from ours) is bound on
     * /dev/console, as runc does, so that ttyname() finds it inside */
    if (p->tty && p->stdio[0] >= 0) {
        int con = open_in_root(rootfd, "/dev/console", 1, 0);
        if (con < 0) FAIL("mount", "cannot create /dev/console: %s", strerror(errno));
        /* by its path in our copy of the host's mounts (the fd's own mount is the host's) */
        char fdp[64], name[CSYS_MAX_PATH];
        ssize_t n = readlink(fdpath(p->stdio[0], fdp, sizeof fdp), name, sizeof name - 1);
        if (n <= 0) FAIL("mount", "cannot name the terminal: %s", strerror(errno));
        name[n] = 0;
        if (bind_onto(name, con, 0, 0) < 0) FAIL("mount", "cannot bind the terminal %s on /dev/console: %s", name, strerror(errno));
        close(con);
    }
    int mq = open_in_root(rootfd, "/dev/mqueue", 0, 1);
    if (mq >= 0) {
        fs_onto("mqueue", NULL, MS_NOSUID | MS_NODEV | MS_NOEXEC, mq); /* best effort */
        close(mq);
    }
}

static void setup_mounts(const csys_container_plan *p) {
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        FAIL_REFUSED("mount", "cannot make mounts private: %s", strerror(errno));
    mount_overlay(p);
    int rootfd = open(p->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0) FAIL("mount", "cannot open the root filesystem: %s", strerror(errno));

    int proc = open_in_root(rootfd, "/proc", 0, 1);
    if (proc < 0) FAIL("mount", "cannot create /proc: %s", strerror(errno));
    if (p->bind_proc) {
        /* the procfs we see, with what masks it: read-only where the kernel lets us */
        if (bind_onto("/proc", proc, 1, 0) < 0) FAIL("mount", "cannot bind /proc: %s", strerror(errno));
    } else if (fs_onto("proc", NULL, MS_NOSUID | MS_NODEV | MS_NOEXEC, proc) < 0) {
        FAIL_REFUSED("mount", "cannot mount /proc: %s", strerror(errno));
    }
    close(proc);

    setup_dev(p, rootfd);

    int sys = open_in_root(rootfd, "/sys", 0, 1);
    if (sys < 0) FAIL("mount", "cannot create /sys: %s", strerror(errno));
    if (p->own_sysfs) {
        if (fs_onto("sysfs", NULL, MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, sys) < 0)
            FAIL_REFUSED("mount", "cannot mount /sys: %s", strerror(errno));
    } else if (bind_onto("/sys", sys, 1, 1) < 0) {
        FAIL("mount", "cannot bind /sys: %s", strerror(errno));
    }
    close(sys);

    const char *etc[3][2] = {{p->etc_hosts, "/etc/hosts"}, {p->etc_hostname, "/etc/hostname"}, {p->etc_resolv, "/etc/resolv.conf"}};
    for (int i = 0; i < 3; i++) {
        if (!etc[i][0]) continue;
        int t = open_in_root(rootfd, etc[i][1], 1, 0);
        if (t < 0) FAIL("mount", "cannot create %s: %s", etc[i][1], strerror(errno));
        struct stat st;
        if (fstat(t, &st) == 0 && !S_ISREG(st.st_mode)) {
            /* a symlink resolved elsewhere or a directory: leave the image's file alone */
            close(t);
            continue;
        }
        if (bind_onto(etc[i][0], t, 0, 0) < 0) FAIL("mount", "cannot bind %s: %s", etc[i][1], strerror(errno));
        close(t);
    }

    for (int i = 0; i < p->nmounts; i++) {
        const csys_mount *m = &p->mounts[i];
        int t = open_in_root(rootfd, m->target, m->is_file, !m->is_file);
        if (t < 0) FAIL("mount", "cannot create the mount point %s: %s", m->target, strerror(errno));
        if (m->kind == CSYS_MNT_TMPFS) {
            if (fs_onto("tmpfs", m->data, m->flags | (m->readonly ? MS_RDONLY : 0), t) < 0)
                FAIL("mount", "cannot mount tmpfs on %s: %s", m->target, strerror(errno));
        } else if (m->kind == CSYS_MNT_OVERLAY) {
            if (fs_onto("overlay", m->data, MS_NODEV | (m->readonly ? MS_RDONLY : 0), t) < 0)
                FAIL("mount", "cannot mount the layers on %s: %s", m->target, strerror(errno));
        } else if (bind_onto_nodev(m->source, t, m->recursive, m->readonly, 1) < 0) {
            FAIL("mount", "cannot mount %s on %s: %s", m->source, m->target, strerror(errno));
        }
        close(t);
    }

    /* the working directory, created inside the root if missing (a symlink on the way, even a
     * dangling one, resolves inside it, as runc does) */
    if (p->cwd) {
        int wd = open_in_root(rootfd, p->cwd, 0, 1);
        if (wd >= 0) close(wd);
    }

    /* the root moves */
    if (fchdir(rootfd) < 0) FAIL("pivot_root", "cannot enter the root: %s", strerror(errno));
    if (syscall(SYS_pivot_root, ".", ".") < 0) FAIL("pivot_root", "pivot_root: %s", strerror(errno));
    if (umount2(".", MNT_DETACH) < 0) FAIL("pivot_root", "cannot detach the old root: %s", strerror(errno));
    if (chdir("/") < 0) FAIL("pivot_root", "chdir /: %s", strerror(errno));
    close(rootfd);

    for (int i = 0; i < p->nmasked; i++) {
        struct stat st;
        if (lstat(p->masked[i], &st) < 0) continue;
        if (S_ISDIR(st.st_mode))
            mount("tmpfs", p->masked[i], "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0");
        else
            mount("/dev/null", p->masked[i], NULL, MS_BIND, NULL);
    }
    for (int i = 0; i < p->nreadonly; i++) {
        int fd = open(p->readonly_paths[i], O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) continue;
        char fp[64];
        if (mount(fdpath(fd, fp, sizeof fp), p->readonly_paths[i], NULL, MS_BIND | MS_REC, NULL) == 0) {
            int m = open(p->readonly_paths[i], O_PATH | O_NOFOLLOW | O_CLOEXEC);
            if (m >= 0) { attr_ro(m, 1); close(m); }
        }
        close(fd);
    }
    if (p->readonly_rootfs) {
        int r = open("/", O_PATH | O_CLOEXEC);
        if (r < 0 || attr_ro(r, 0) < 0) FAIL("mount", "cannot make the root read-only: %s", strerror(errno));
        close(r);
    }
}

/* ---------------------------------------------------------------- the process */

static void lo_up(const csys_container_plan *p) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) FAIL("network", "socket: %s", strerror(errno));
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) FAIL("network", "lo: %s", strerror(errno));
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) FAIL_REFUSED("network", "cannot bring lo up: %s", strerror(errno));
    close(s);
}

static void mkdir_p(const char *path) {
    char buf[CSYS_MAX_PATH];
    size_t n = strlen(path);
    if (n >= sizeof buf) return;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != 0) continue;
        char c = buf[i];
        buf[i] = 0;
        mkdir(buf, 0755);
        buf[i] = c;
    }
}

static void set_identity(const csys_container_plan *p, int setgroups_ok, const gid_t *groups, int ngroups,
                         uint32_t uid, uint32_t gid, uint64_t caps, int cap_last) {
    /* bounding set first (needs CAP_SETPCAP, which we still have) */
    for (int c = 0; c <= cap_last; c++) {
        if (!(caps & (1ULL << c)) && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL)
            FAIL("capabilities", "cannot drop capability %d: %s", c, strerror(errno));
    }
    if (setgroups_ok && syscall(SYS_setgroups, (size_t)ngroups, groups) < 0)
        FAIL("user", "setgroups: %s", strerror(errno));
    if (syscall(SYS_setresgid, gid, gid, gid) < 0) FAIL("user", "cannot switch to gid %u: %s", gid, strerror(errno));
    if (syscall(SYS_setresuid, uid, uid, uid) < 0) FAIL("user", "cannot switch to uid %u: %s", uid, strerror(errno));
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    if (uid == 0) {
        /* no inheritable set (CVE-2022-24769): an exec'd file gains nothing it does not carry */
        data[0].effective = data[0].permitted = (uint32_t)caps;
        data[1].effective = data[1].permitted = (uint32_t)(caps >> 32);
    }
    if (syscall(SYS_capset, &hdr, data) < 0) FAIL("capabilities", "capset: %s", strerror(errno));
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
}

static int install_seccomp(const unsigned char *bpf, size_t len) {
    struct sock_fprog prog = {(unsigned short)(len / sizeof(struct sock_filter)), (struct sock_filter *)bpf};
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0);
}

void csys_signals_reset_child(void) {
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    for (int s = 1; s < NSIG; s++) {
        if (s == SIGKILL || s == SIGSTOP) continue;
        signal(s, SIG_DFL);
    }
}

static void setup_stdio(const int stdio[3], int tty, int sync_fd, const csys_container_plan *p) {
    /* move the sources above 2 first so the dup2s do not clobber one another */
    int tmp[3];
    for (int i = 0; i < 3; i++) tmp[i] = stdio[i] >= 0 ? fcntl(stdio[i], F_DUPFD_CLOEXEC, 10) : -1;
    for (int i = 0; i < 3; i++)
        if (tmp[i] >= 0 && dup2(tmp[i], i) < 0) FAIL("stdio", "dup2: %s", strerror(errno));
    for (int i = 0; i < 3; i++)
        if (tmp[i] >= 0) close(tmp[i]);
    /* a session of its own, with the terminal only under -t: a process that shared ctr's
     * controlling terminal could push input into the host's shell (TIOCSTI), as runc avoids */
    if (setsid() < 0) FAIL("tty", "setsid: %s", strerror(errno));
    if (tty && ioctl(0, TIOCSCTTY, 0) < 0) FAIL("tty", "cannot take the terminal: %s", strerror(errno));
    (void)sync_fd;
}

/* The last step: the command through the exec stub (see csys_exec_via_stub), PATH searched
 * as the user it runs as. */
static void exec_command(const csys_container_plan *p) {
    char path[CSYS_MAX_PATH];
    const char *cmd = p->argv[0];
    int r = csys_resolve_command(cmd, p->path_env, path, sizeof path);
    if (r < 0) {
        errno = -r;
        if (strchr(cmd, '/')) FAIL_EXEC("exec: \"%s\": %s", cmd, strerror(errno));
        if (r == -EACCES) FAIL_EXEC("exec: \"%s\": permission denied", cmd);
        FAIL_EXEC("exec: \"%s\": executable file not found in $PATH", cmd);
    }
    csys_exec_via_stub(p->stub_fd, p->sync_fd, p->init, path, p->argv, p->envp);
    FAIL_EXEC("cannot start ctr's exec stub: %s", strerror(errno));
}

/* ---------------------------------------------------------------- the child */

static int child_main(const csys_container_plan *p) {
    if (p->pdeathsig) prctl(PR_SET_PDEATHSIG, p->pdeathsig);
    /* wait for the parent: id maps, cgroup, network (newuidmap needs us dumpable until then);
     * with idmapped lowers the go brings them */
    char go;
    ssize_t n = csys_recv_with_fds(p->sync_fd, &go, 1, passed, CSYS_MAX_PASSED_FDS, &npassed);
    if (n != 1) _exit(125);
    /* from here until exec nobody may ptrace us or open /proc/PID/exe (the ctr binary) */
    prctl(PR_SET_DUMPABLE, 0);
    if (p->userns || p->join_userns_fd >= 0) {
        /* raw syscalls: after a raw clone3 glibc's wrappers would wait for the parent's other
         * threads (copied in its thread list, absent here) to acknowledge the id change */
        if (syscall(SYS_setresgid, 0, 0, 0) < 0 || syscall(SYS_setresuid, 0, 0, 0) < 0)
            FAIL("userns", "cannot become root in the user namespace: %s", strerror(errno));
    }
    if (p->chroot_dir) {
        /* no namespace can be made: the tree the builder prepared, nothing mounted */
        if (chroot(p->chroot_dir) < 0) FAIL("chroot", "cannot chroot into %s: %s", p->chroot_dir, strerror(errno));
        if (chdir("/") < 0) FAIL("chroot", "chdir /: %s", strerror(errno));
    } else {
        if (p->cgroupns && unshare(CLONE_NEWCGROUP) < 0 && errno != EINVAL)
            FAIL_REFUSED("cgroup", "cannot create a cgroup namespace: %s", strerror(errno));

        setup_mounts(p);

        if (p->hostname && !p->keep_hostname && sethostname(p->hostname, strlen(p->hostname)) < 0)
            FAIL_REFUSED("hostname", "sethostname: %s", strerror(errno));
        if (p->netns) lo_up(p);
    }

    if (p->cwd && chdir(p->cwd) < 0) {
        mkdir_p(p->cwd);
        if (chdir(p->cwd) < 0) FAIL("cwd", "cannot enter the working directory %s: %s", p->cwd, strerror(errno));
    }
    for (int i = 0; i < p->nrlimits; i++) {
        struct rlimit rl = {(rlim_t)p->rlimits[i].soft, (rlim_t)p->rlimits[i].hard};
        if (setrlimit(p->rlimits[i].resource, &rl) < 0) FAIL("rlimit", "setrlimit %d: %s", p->rlimits[i].resource, strerror(errno));
    }
    setup_stdio(p->stdio, p->tty, p->sync_fd, p);

    if (!p->no_new_privs && p->seccomp && install_seccomp(p->seccomp, p->seccomp_len) < 0)
        FAIL("seccomp", "cannot install the seccomp filter: %s", strerror(errno));
    set_identity(p, p->setgroups, p->groups, p->ngroups, p->uid, p->gid, p->caps, p->cap_last);
    if (p->no_new_privs) {
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) FAIL("no_new_privs", "prctl: %s", strerror(errno));
        if (p->seccomp && install_seccomp(p->seccomp, p->seccomp_len) < 0)
            FAIL("seccomp", "cannot install the seccomp filter: %s", strerror(errno));
    }
    csys_signals_reset_child();
    /* nothing but stdio and the sync socket crosses exec (the stub closes the socket on its
     * own exec); with --init the stub is pid 1 and forks the command */
    csys_cloexec_from(3);
    exec_command(p);
    return 127;
}

/* The user's shared user namespace: a middle process joins it (setns needs a single thread),
 * clones the container's first process into new namespaces owned by it as a child of ours
 * (CLONE_PARENT), reports its pid and exits. The middle shares our memory (vfork-style, on a
 * stack of its own): only the container's process is a copy of ours. */
struct joined_args {
    const csys_container_plan *p;
    uint64_t flags;
    int report;
};

static int joined_middle(void *arg) {
    struct joined_args *a = arg;
    const csys_container_plan *p = a->p;
    if (p->pdeathsig) prctl(PR_SET_PDEATHSIG, p->pdeathsig);
    csys_error e;
    memset(&e, 0, sizeof e);
    long pid = -1;
    if (setns(p->join_userns_fd, CLONE_NEWUSER) < 0) {
        csys_set_error(&e, errno, "clone", "cannot join the user namespace of this user's containers: %s", strerror(errno));
    } else {
        struct clone_args args;
        memset(&args, 0, sizeof args);
        args.flags = a->flags | CLONE_PARENT; /* exit_signal 0: the middle's SIGCHLD is inherited */
        pid = syscall(SYS_clone3, &args, sizeof args);
        if (pid == 0) _exit(child_main(p));
        if (pid < 0) {
            csys_set_error(&e, errno, "clone", "cannot create the container's namespaces: %s", strerror(errno));
            if (errno == EPERM || errno == ENOSPC) e.kind = CSYS_ERR_REFUSED;
        }
    }
    if (pid > 0) {
        e.err = (int)pid;
        strcpy(e.stage, "pid");
    }
    (void)!write(a->report, &e, sizeof e);
    _exit(pid > 0 ? 0 : 125);
}

static pid_t clone_joined(const csys_container_plan *p, uint64_t flags, csys_error *err) {
    int rep[2];
    if (pipe2(rep, O_CLOEXEC) < 0) {
        csys_set_error(err, errno, "clone", "cannot make a pipe: %s", strerror(errno));
        return -1;
    }
    /* a big stack: the container's process runs child_main on its copy of it */
    size_t size = 1 << 20;
    char *stack = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED) {
        csys_set_error(err, errno, "clone", "cannot map a stack: %s", strerror(errno));
        close(rep[0]);
        close(rep[1]);
        return -1;
    }
    struct joined_args a = {p, flags, rep[1]};
    pid_t mid = clone(joined_middle, stack + size, CLONE_VM | CLONE_VFORK | SIGCHLD, &a);
    int ce = errno;
    munmap(stack, size);
    close(rep[1]);
    if (mid < 0) {
        csys_set_error(err, ce, "clone", "cannot start the container: %s", strerror(ce));
        close(rep[0]);
        return -1;
    }
    csys_error e;
    ssize_t n;
    do n = read(rep[0], &e, sizeof e);
    while (n < 0 && errno == EINTR);
    close(rep[0]);
    csys_wait_exit(mid);
    if (n != (ssize_t)sizeof e) {
        csys_set_error(err, EIO, "clone", "the container's first process could not be started");
        return -1;
    }
    if (strcmp(e.stage, "pid") != 0) {
        *err = e;
        return -1;
    }
    return (pid_t)e.err;
}

pid_t csys_container_clone(const csys_container_plan *p, csys_error *err) {
    struct clone_args args;
    memset(&args, 0, sizeof args);
    args.flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC;
    if (p->userns) args.flags |= CLONE_NEWUSER;
    if (p->netns) args.flags |= CLONE_NEWNET;
    if (p->chroot_dir) args.flags = 0; /* the chroot level: no namespace at all */
    if (p->join_userns_fd >= 0) return clone_joined(p, args.flags, err);
    args.exit_signal = SIGCHLD;
    long pid = syscall(SYS_clone3, &args, sizeof args);
    if (pid < 0 && errno == ENOSYS) {
        pid = syscall(SYS_clone, (unsigned long)args.flags | SIGCHLD, NULL, NULL, NULL, NULL);
    }
    if (pid < 0) {
        int e = errno;
        csys_set_error(err, e, "clone", "cannot create the container's namespaces: %s", strerror(e));
        if (e == EPERM || e == ENOSPC) err->kind = CSYS_ERR_REFUSED; /* the probes say why */
        return -1;
    }
    if (pid == 0) _exit(child_main(p));
    return (pid_t)pid;
}

pid_t csys_userns_keeper_start(int stub_fd, const char *state_path, int *release_fd, csys_error *err) {
    int rel[2];
    if (pipe2(rel, O_CLOEXEC) < 0) {
        csys_set_error(err, errno, "userns", "cannot make a pipe: %s", strerror(errno));
        return -1;
    }
    struct clone_args args;
    memset(&args, 0, sizeof args);
    args.flags = CLONE_NEWUSER;
    args.exit_signal = SIGCHLD;
    long pid = syscall(SYS_clone3, &args, sizeof args);
    if (pid < 0) {
        csys_set_error(err, errno, "userns", "cannot create a user namespace: %s", strerror(errno));
        close(rel[0]);
        close(rel[1]);
        return -1;
    }
    if (pid == 0) {
        /* C only: wait for the maps, then a session of our own and the stub's pause loop */
        char go;
        ssize_t n;
        do n = read(rel[0], &go, 1);
        while (n < 0 && errno == EINTR);
        if (n != 1) _exit(0);
        setsid();
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null >= 0) { dup2(null, 0); dup2(null, 1); dup2(null, 2); }
        csys_signals_reset_child();
        csys_cloexec_from(3);
        const char *argv[] = {"ctr-userns", "--ctr-stub=1", "pause", "-1", state_path, "pause", NULL};
        const char *envp[] = {NULL};
        syscall(SYS_execveat, stub_fd, "", argv, envp, AT_EMPTY_PATH);
        _exit(127);
    }
    close(rel[0]);
    *release_fd = rel[1];
    return (pid_t)pid;
}

int csys_container_release(int fd, csys_error *err, int *fuse_fd, int timeout_ms) {
    return csys_container_release_with(fd, NULL, 0, err, fuse_fd, timeout_ms);
}

int csys_idmapped_tree(const char *path, int userns_fd, csys_error *err) {
    int t = open_tree(AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    if (t < 0) {
        csys_set_error(err, errno, "idmap", "cannot clone the mount of %s: %s", path, strerror(errno));
        return -1;
    }
    struct mount_attr a;
    memset(&a, 0, sizeof a);
    a.attr_set = MOUNT_ATTR_IDMAP;
    a.userns_fd = (uint64_t)userns_fd;
    if (mount_setattr(t, "", AT_EMPTY_PATH, &a, sizeof a) < 0) {
        int e = errno;
        close(t);
        csys_set_error(err, e, "idmap", "cannot make an idmapped mount of %s: %s%s", path, strerror(e),
                       e == EINVAL ? " (its filesystem does not support idmapped mounts)" : "");
        return -1;
    }
    return t;
}

int csys_container_release_with(int fd, const int *fds, int nfds, csys_error *err, int *fuse_fd, int timeout_ms) {
    char go = 'g';
    ssize_t n;
    if (nfds > CSYS_MAX_PASSED_FDS) {
        csys_set_error(err, E2BIG, "start", "too many fds to pass (%d)", nfds);
        return -1;
    }
    n = csys_send_with_fds(fd, &go, 1, fds, nfds, 0);
    if (n != 1) {
        /* the child is gone already: its report may be waiting */
    }
    if (timeout_ms > 0) {
        struct pollfd pfd = {fd, POLLIN, 0};
        int r;
        do r = poll(&pfd, 1, timeout_ms);
        while (r < 0 && errno == EINTR);
        if (r == 0) {
            csys_set_error(err, ETIMEDOUT, "timeout", "no answer within %d s", timeout_ms / 1000);
            return -1;
        }
    }
    csys_error e;
    int passed = -1, npassed = 0;
    n = csys_recv_with_fds(fd, &e, sizeof e, &passed, 1, &npassed);
    if (n == 0) return 0; /* exec closed the socket */
    if (n == (ssize_t)sizeof e && !strcmp(e.stage, "need-fuse") && passed >= 0) {
        if (fuse_fd) {
            *fuse_fd = passed;
            return 1;
        }
        close(passed);
        csys_set_error(err, EINVAL, "start", "the container asked for fuse-overlayfs unexpectedly");
        return -1;
    }
    if (passed >= 0) close(passed);
    if (n == (ssize_t)sizeof e) {
        *err = e;
        return -1;
    }
    csys_set_error(err, errno, "start", "the container process died before it started");
    return -1;
}

/* After the raw clone below only write(2) and syscalls: no stdio, no strerror. */
static void daemon_fail(const char *what) {
    char m[160];
    size_t n = 0;
    const char *pre = "ctr: ";
    for (const char *q = pre; *q && n < sizeof m - 16; q++) m[n++] = *q;
    for (const char *q = what; *q && n < sizeof m - 16; q++) m[n++] = *q;
    const char *mid = " (errno ";
    for (const char *q = mid; *q; q++) m[n++] = *q;
    char digits[12];
    int d = 0, e = errno;
    do { digits[d++] = (char)('0' + e % 10); e /= 10; } while (e && d < 11);
    while (d) m[n++] = digits[--d];
    m[n++] = ')';
    m[n++] = '\n';
    (void)!write(2, m, n);
    _exit(125);
}

pid_t csys_fuse_daemon_start(int userns_fd, int fuse_fd, const char *const *argv, const char *log_path, csys_error *err) {
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null < 0) {
        csys_set_error(err, errno, "fuse", "cannot open /dev/null: %s", strerror(errno));
        return -1;
    }
    int log = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (log < 0) {
        csys_set_error(err, errno, "fuse", "cannot open %s: %s", log_path, strerror(errno));
        close(null);
        return -1;
    }
    /* raw: the parent has threads (see child_main) */
    long pid = syscall(SYS_clone, (unsigned long)SIGCHLD, NULL, NULL, NULL, NULL);
    if (pid == 0) {
        setsid();
        if (dup2(null, 0) < 0 || dup2(log, 1) < 0 || dup2(log, 2) < 0) _exit(125);
        /* the namespace first: its fd may be the 3 the connection is about to take */
        if (userns_fd >= 0) {
            if (setns(userns_fd, CLONE_NEWUSER) < 0) daemon_fail("cannot join the container's user namespace");
            /* root of that namespace (already so rootless; as root with --userns, our host
             * uid 0 is not mapped there) */
            if (syscall(SYS_setresgid, 0, 0, 0) < 0 || syscall(SYS_setresuid, 0, 0, 0) < 0)
                daemon_fail("cannot become root in the container's user namespace");
        }
        if (fuse_fd == 3 ? fcntl(3, F_SETFD, 0) < 0 : dup2(fuse_fd, 3) < 0) daemon_fail("cannot pass the fuse connection");
        static const int keep[1] = {3};
        csys_close_fds_except(keep, 1);
        csys_signals_reset_child();
        execv(argv[0], (char *const *)argv);
        daemon_fail("cannot run fuse-overlayfs");
    }
    int e = errno;
    close(null);
    close(log);
    if (pid < 0) {
        csys_set_error(err, e, "fuse", "cannot start fuse-overlayfs: %s", strerror(e));
        return -1;
    }
    return (pid_t)pid;
}

int csys_wait_status(pid_t pid) { return csys_wait_exit(pid); }

uint64_t csys_proc_starttime(pid_t pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = 0;
    char *s = strrchr(buf, ')');
    if (!s) return 0;
    /* fields after comm: state is field 3; starttime is field 22 */
    /* a zombie has finished: it counts as gone (its parent may be slow to reap it) */
    if (s[1] == ' ' && (s[2] == 'Z' || s[2] == 'X')) return 0;
    int field = 2;
    for (char *q = s + 1; *q; q++) {
        if (*q == ' ') {
            field++;
            if (field == 22) return strtoull(q + 1, NULL, 10);
        }
    }
    return 0;
}
