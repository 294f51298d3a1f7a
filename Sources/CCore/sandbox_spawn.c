#define _GNU_SOURCE
#include "sandbox_spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/close_range.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

// In the child: only system calls from here on (the parent has threads).
static void fail(int fd, int step) {
    int report[2] = {step, errno};
    ssize_t ignored = write(fd, report, sizeof report);
    (void)ignored;
    _exit(127);
}

static void child(const dnsfence_sandbox_program *p, int report, pid_t parent) {
    if (setns(p->netns_fd, CLONE_NEWNET) != 0) fail(report, DNSFENCE_SPAWN_NETNS);
    if (unshare(CLONE_NEWNS) != 0) fail(report, DNSFENCE_SPAWN_MOUNTNS);
    if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) != 0) fail(report, DNSFENCE_SPAWN_MOUNTNS);
    if (p->resolv_conf != NULL && mount(p->resolv_conf, "/etc/resolv.conf", NULL, MS_BIND, NULL) != 0)
        fail(report, DNSFENCE_SPAWN_RESOLV_CONF);
    // /sys as the sandbox's network namespace sees it (as `ip netns exec` does); best effort.
    if (umount2("/sys", MNT_DETACH) == 0) mount("sysfs", "/sys", "sysfs", 0, NULL);
    // Nothing ignored or blocked is inherited from dnsfence (it ignores SIGPIPE, SIGINT, …).
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    struct sigaction standard;
    memset(&standard, 0, sizeof standard);
    standard.sa_handler = SIG_DFL;
    for (int signal = 1; signal < NSIG; signal++) sigaction(signal, &standard, NULL);
    // Capabilities: the bounding set first (that needs CAP_SETPCAP, which the user change drops).
    for (int cap = 0; cap <= 63; cap++) {
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) fail(report, DNSFENCE_SPAWN_CAPABILITIES);
    }
    if (setgroups(p->group_count, p->groups) != 0) fail(report, DNSFENCE_SPAWN_USER);
    if (setresgid(p->gid, p->gid, p->gid) != 0) fail(report, DNSFENCE_SPAWN_USER);
    if (setresuid(p->uid, p->uid, p->uid) != 0) fail(report, DNSFENCE_SPAWN_USER);
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    if (syscall(SYS_capset, &header, data) != 0) fail(report, DNSFENCE_SPAWN_CAPABILITIES);
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
        fail(report, DNSFENCE_SPAWN_CAPABILITIES);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) fail(report, DNSFENCE_SPAWN_CAPABILITIES);
    // After the user change, which clears it: killed when dnsfence's spawning thread goes.
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (getppid() != parent) _exit(127);
    if (p->directory == NULL || chdir(p->directory) != 0) {
        if (chdir("/") != 0) fail(report, DNSFENCE_SPAWN_USER);
    }
    // Nothing of dnsfence's reaches the program, even a descriptor opened without O_CLOEXEC
    // (a netlink socket opened as root would let it change the firewall).
    syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);
    execve(p->path, p->argv, p->envp);
    fail(report, DNSFENCE_SPAWN_EXEC);
}

pid_t dnsfence_sandbox_spawn(const dnsfence_sandbox_program *program, int *step) {
    int pipe_fds[2];
    if (pipe2(pipe_fds, O_CLOEXEC) != 0) return -1;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        int saved = errno;
        close(pipe_fds[0]);
        close(pipe_fds[1]);
        errno = saved;
        return -1;
    }
    if (pid == 0) {
        close(pipe_fds[0]);
        child(program, pipe_fds[1], parent);
    }
    close(pipe_fds[1]);
    int report[2];
    ssize_t got;
    do got = read(pipe_fds[0], report, sizeof report);
    while (got < 0 && errno == EINTR);
    close(pipe_fds[0]);
    if (got == (ssize_t)sizeof report) {
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        *step = report[0];
        errno = report[1];
        return -1;
    }
    *step = 0;
    return pid;
}
