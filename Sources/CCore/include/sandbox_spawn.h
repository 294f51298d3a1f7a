#ifndef DNSFENCE_SANDBOX_SPAWN_H
#define DNSFENCE_SANDBOX_SPAWN_H
// Starting `dnsfence run`'s program inside the sandbox.

#include <stddef.h>
#include <sys/types.h>

typedef struct {
    int netns_fd;             // the sandbox's network namespace (an open /run/netns/NAME)
    const char *resolv_conf;  // bind-mounted over /etc/resolv.conf in a private mount namespace
    uid_t uid;
    gid_t gid;
    const gid_t *groups;
    size_t group_count;
    const char *path;         // the executable, already resolved
    char *const *argv;
    char *const *envp;
    const char *directory;    // working directory; "/" when the user cannot enter it
} dnsfence_sandbox_program;

/// The step of the child's set-up that failed.
typedef enum {
    DNSFENCE_SPAWN_NETNS = 1,
    DNSFENCE_SPAWN_MOUNTNS = 2,
    DNSFENCE_SPAWN_RESOLV_CONF = 3,
    DNSFENCE_SPAWN_CAPABILITIES = 4,
    DNSFENCE_SPAWN_USER = 5,
    DNSFENCE_SPAWN_EXEC = 6,
} dnsfence_spawn_step;

/// Forks a child that enters the network namespace and a private mount namespace (where
/// /etc/resolv.conf is `resolv_conf` and /sys is the namespace's), with every signal at its
/// default and none blocked, becomes uid/gid with `groups`, with no capabilities at all (none
/// permitted, effective, inheritable, ambient or in the bounding set) and no_new_privs, is
/// killed if the calling thread exits, and executes the program. Call it from a thread that
/// lives until the child is reaped. Returns the child's pid once it has executed, or -1 with
/// errno set (the child's, when its set-up or exec failed: *step names where; it is reaped).
pid_t dnsfence_sandbox_spawn(const dnsfence_sandbox_program *program, int *step);

#endif
