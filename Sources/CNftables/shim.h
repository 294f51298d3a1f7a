#ifndef DNSFENCE_CNFTABLES_SHIM_H
#define DNSFENCE_CNFTABLES_SHIM_H
#define _GNU_SOURCE
#include <sched.h>
#include <fcntl.h>
#include <unistd.h>
#include <nftables/libnftables.h>

/// Enters the network namespace at `path` for the calling thread only (setns(2) acts per thread).
static inline int dnsfence_enter_netns(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = setns(fd, CLONE_NEWNET);
    close(fd);
    return rc;
}

/// Enters the network namespace open at `fd` for the calling thread only.
static inline int dnsfence_enter_netns_fd(int fd) { return setns(fd, CLONE_NEWNET); }
#endif
