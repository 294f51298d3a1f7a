#define _GNU_SOURCE
#include "privileges.h"

#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static int capability_get(struct __user_cap_data_struct data[2]) {
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    return (int)syscall(SYS_capget, &header, data);
}

uint64_t dnsfence_effective_capabilities(void) {
    struct __user_cap_data_struct data[2] = {{0}};
    if (capability_get(data) != 0) return 0;
    return (uint64_t)data[0].effective | ((uint64_t)data[1].effective << 32);
}

static int last_capability(void) {
    int last = 40;
    FILE *file = fopen("/proc/sys/kernel/cap_last_cap", "re");
    if (file != NULL) {
        if (fscanf(file, "%d", &last) != 1) last = 40;
        fclose(file);
    }
    return last < 63 ? last : 63;
}

uint64_t dnsfence_bounding_capabilities(void) {
    uint64_t mask = 0;
    for (int cap = 0; cap <= last_capability(); cap++) {
        if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) == 1) mask |= (uint64_t)1 << cap;
    }
    return mask;
}

int dnsfence_become_user(const char *user, uid_t uid, gid_t gid, uint64_t keep, char *const argv[],
                         char *const envp[], const char **step) {
#define STEP(name, call)       \
    do {                       \
        *step = name;          \
        if ((call) != 0) return -1; \
    } while (0)
    for (int cap = 0; cap <= last_capability(); cap++) {
        if (!(keep & ((uint64_t)1 << cap))) STEP("dropping the bounding set", prctl(PR_CAPBSET_DROP, cap, 0, 0, 0));
    }
    STEP("keeping capabilities across the user change", prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0));
    STEP("setting the supplementary groups", initgroups(user, gid));
    STEP("setting the group", setresgid(gid, gid, gid));
    STEP("setting the user", setresuid(uid, uid, uid));
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2] = {{0}};
    data[0].effective = data[0].permitted = data[0].inheritable = (uint32_t)keep;
    data[1].effective = data[1].permitted = data[1].inheritable = (uint32_t)(keep >> 32);
    STEP("setting the capabilities", (int)syscall(SYS_capset, &header, data));
    for (int cap = 0; cap <= last_capability(); cap++) {
        if (keep & ((uint64_t)1 << cap))
            STEP("raising the ambient capabilities", prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0));
    }
    STEP("setting no_new_privs", prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
    *step = "executing /proc/self/exe";
    execve("/proc/self/exe", argv, envp);
    return -1;
#undef STEP
}
