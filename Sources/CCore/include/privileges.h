#ifndef DNSFENCE_PRIVILEGES_H
#define DNSFENCE_PRIVILEGES_H
// Running as an unprivileged user with only the capabilities dnsfence needs.

#include <stdint.h>
#include <sys/types.h>

/// The calling thread's effective capabilities, one bit per capability number.
uint64_t dnsfence_effective_capabilities(void);

/// The bounding set, one bit per capability number.
uint64_t dnsfence_bounding_capabilities(void);

/// As root: drops every capability not in `keep` from the bounding set, becomes `uid`/`gid`
/// with `user`'s supplementary groups, keeps exactly `keep` (permitted, effective, inheritable
/// and ambient), sets no_new_privs, and executes this program again with `argv` and `envp`, so
/// that every thread of the new image starts with those capabilities and no others (capability
/// changes are per thread; a fresh image has one thread). Returns only on failure: -1 with
/// errno set, and `step` naming what failed.
int dnsfence_become_user(const char *user, uid_t uid, gid_t gid, uint64_t keep, char *const argv[],
                         char *const envp[], const char **step);

#endif
