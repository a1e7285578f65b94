/*
 * What this process may do to sandbox a command: the probes behind the isolation levels (ctr
 * info, ctr build in CI containers). Each probe runs in a forked child (a user namespace
 * needs a single thread) that tries the real thing on a tmpfs of its own and records the
 * errno that refused it; nothing outside the child changes.
 */
#include "include/csys_probe.h"
#include "csys_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLONE_NEWCGROUP
#define CLONE_NEWCGROUP 0x02000000
#endif

static int write_str(const char *path, const char *s) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    ssize_t n = write(fd, s, strlen(s));
    int e = n == (ssize_t)strlen(s) ? 0 : -errno;
    close(fd);
    return e;
}

static uint64_t effective_caps(void) {
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    if (syscall(SYS_capget, &hdr, data) < 0) return 0;
    return (uint64_t)data[0].effective | ((uint64_t)data[1].effective << 32);
}

uint64_t csys_probe_effective_caps(void) { return effective_caps(); }

#define TRY(field, call) (p->field = (call) == 0 ? 0 : (errno ? errno : EIO))

static const char *probe_store_dir;

/* In the child: the namespaces and mounts a container needs, one by one. */
static void probe_namespaces(csys_ns_probe *p, int new_userns) {
    p->tried = 1;
    uid_t uid = geteuid();
    gid_t gid = getegid();
    if (new_userns) {
        if (TRY(userns, unshare(CLONE_NEWUSER)) != 0) return;
        /* its own id, as the single mapping a process may write for itself */
        int e = write_str("/proc/self/setgroups", "deny");
        char m[64];
        snprintf(m, sizeof m, "0 %u 1\n", (unsigned)uid);
        if (e == 0) e = write_str("/proc/self/uid_map", m);
        snprintf(m, sizeof m, "0 %u 1\n", (unsigned)gid);
        if (e == 0) e = write_str("/proc/self/gid_map", m);
        p->idmap = -e;
        /* Ubuntu 24.04's AppArmor restriction: a user namespace with no capabilities in it */
        p->userns_caps = (effective_caps() & (1ULL << CAP_SYS_ADMIN)) ? 0 : EPERM;
    }
    if (TRY(mountns, unshare(CLONE_NEWNS)) != 0) return;
    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
    static const char *const spots[] = {"/tmp", "/mnt", "/run", "/var/tmp", "/dev", "/"};
    const char *t = NULL;
    for (size_t i = 0; i < sizeof spots / sizeof spots[0]; i++) {
        struct stat st;
        if (stat(spots[i], &st) == 0 && S_ISDIR(st.st_mode)) { t = spots[i]; break; }
    }
    /* overlayfs with its upper dir on the store's filesystem (dirs the parent made) */
    if (probe_store_dir) {
        char l[4096], u[4096], w[4096], m[4096], opts[16384];
        snprintf(l, sizeof l, "%s/l", probe_store_dir);
        snprintf(u, sizeof u, "%s/u", probe_store_dir);
        snprintf(w, sizeof w, "%s/w", probe_store_dir);
        snprintf(m, sizeof m, "%s/m", probe_store_dir);
        snprintf(opts, sizeof opts, "lowerdir=%s,upperdir=%s,workdir=%s%s", l, u, w, new_userns ? ",userxattr" : "");
        TRY(overlay_store, mount("overlay", m, "overlay", 0, opts));
    }
    if (TRY(tmpfs, mount("ctr-probe", t, "tmpfs", MS_NOSUID, "mode=0755,size=256k")) != 0) return;
    if (chdir(t) < 0) return;
    TRY(mknod, mknod("null", S_IFCHR | 0666, makedev(1, 3)));
    mkdir("l", 0755); mkdir("u", 0755); mkdir("w", 0755); mkdir("m", 0755); mkdir("proc", 0755); mkdir("sys", 0755);
    TRY(overlay, mount("overlay", "m", "overlay", 0,
                       new_userns ? "lowerdir=l,upperdir=u,workdir=w,userxattr" : "lowerdir=l,upperdir=u,workdir=w"));
    if (TRY(uts, unshare(CLONE_NEWUTS)) == 0) TRY(hostname, sethostname("ctr-probe", 9));
    TRY(ipcns, unshare(CLONE_NEWIPC));
    TRY(cgroupns, unshare(CLONE_NEWCGROUP));
    if (TRY(netns, unshare(CLONE_NEWNET)) == 0) TRY(sysfs, mount("sysfs", "sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, NULL));
    /* a fresh procfs needs a pid namespace of our own, and no masked /proc (mount_too_revealing) */
    if (TRY(pidns, unshare(CLONE_NEWPID)) == 0) {
        pid_t c = fork();
        if (c == 0) _exit(mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) == 0 ? 0 : (errno & 0x7f));
        int st = 0;
        if (c < 0) p->procfs = errno;
        else if (waitpid(c, &st, 0) == c && WIFEXITED(st)) p->procfs = WEXITSTATUS(st);
        else p->procfs = EIO;
    }
}

static void probe_chroot(csys_sandbox_probe *out) {
    out->chroot = chroot("/") == 0 ? 0 : errno;
}

static int run_child(void (*fn)(void *), void *arg) {
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        fn(arg);
        _exit(0);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    return 0;
}

static void nested_fn(void *a) { probe_namespaces(&((csys_sandbox_probe *)a)->nested, 1); }
static void direct_fn(void *a) { probe_namespaces(&((csys_sandbox_probe *)a)->direct, 0); }
static void chroot_fn(void *a) { probe_chroot(a); }

int csys_probe_sandbox(csys_sandbox_probe *out, const char *store_dir) {
    probe_store_dir = NULL;
    char dir[4096];
    if (store_dir) {
        snprintf(dir, sizeof dir, "%s/.probe-%d", store_dir, (int)getpid());
        if (mkdir(dir, 0700) == 0) {
            char sub[4200];
            static const char *const names[] = {"l", "u", "w", "m"};
            for (int i = 0; i < 4; i++) { snprintf(sub, sizeof sub, "%s/%s", dir, names[i]); mkdir(sub, 0755); }
            probe_store_dir = dir;
        }
    }
    /* "not tried" everywhere until a probe says otherwise */
    memset(out, 0, sizeof *out);
    int *fields[] = {&out->nested.userns, &out->nested.idmap, &out->nested.userns_caps, &out->nested.mountns,
                     &out->nested.tmpfs, &out->nested.mknod, &out->nested.overlay, &out->nested.uts,
                     &out->nested.hostname, &out->nested.ipcns, &out->nested.cgroupns, &out->nested.netns,
                     &out->nested.sysfs, &out->nested.pidns, &out->nested.procfs, &out->nested.overlay_store,
                     &out->direct.userns, &out->direct.idmap, &out->direct.userns_caps, &out->direct.mountns,
                     &out->direct.tmpfs, &out->direct.mknod, &out->direct.overlay, &out->direct.uts,
                     &out->direct.hostname, &out->direct.ipcns, &out->direct.cgroupns, &out->direct.netns,
                     &out->direct.sysfs, &out->direct.pidns, &out->direct.procfs, &out->direct.overlay_store, &out->chroot};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) *fields[i] = -1;
    uint64_t caps = effective_caps();
    out->caps = caps;
    out->uid = (int)geteuid();
    /* seccomp mode and the user namespace we are in */
    char buf[4096];
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n > 0) {
            buf[n] = 0;
            char *s = strstr(buf, "\nSeccomp:");
            if (s) out->seccomp_mode = atoi(s + 9);
        }
    }
    fd = open("/proc/sys/user/max_user_namespaces", O_RDONLY | O_CLOEXEC);
    out->max_user_namespaces = -1;
    if (fd >= 0) {
        ssize_t n = read(fd, buf, 63);
        close(fd);
        if (n > 0) { buf[n] = 0; out->max_user_namespaces = atol(buf); }
    }
    fd = open("/proc/self/uid_map", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n > 0) {
            buf[n] = 0;
            unsigned a = 1, b = 1;
            unsigned long c = 0;
            sscanf(buf, "%u %u %lu", &a, &b, &c);
            out->in_userns = !(a == 0 && b == 0 && c == 4294967295UL);
        }
    }
    csys_sandbox_probe *shared = csys_shared_alloc(sizeof *shared);
    if (!shared) return -1;
    *shared = *out;
    run_child(nested_fn, shared);
    if (geteuid() == 0) {
        run_child(direct_fn, shared);
        run_child(chroot_fn, shared);
    }
    *out = *shared;
    csys_shared_free(shared, sizeof *shared);
    if (probe_store_dir) {
        /* what the probes made there (overlay's work/work among it) */
        uint64_t freed = 0;
        csys_error e;
        int dfd = open(store_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            char name[64];
            snprintf(name, sizeof name, ".probe-%d", (int)getpid());
            csys_rmtree_count(dfd, name, &freed, &e);
            close(dfd);
        }
    }
    return 0;
}
