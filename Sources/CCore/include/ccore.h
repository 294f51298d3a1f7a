#ifndef DNSFENCE_CCORE_H
#define DNSFENCE_CCORE_H

/// Names the calling thread (Linux keeps the first 15 bytes).
void dnsfence_set_thread_name(const char *name);

#include <spawn.h>

/// Adds "close every descriptor from `low` up" to a spawn's file actions (glibc's
/// posix_spawn_file_actions_addclosefrom_np, which Swift does not see without _GNU_SOURCE).
int dnsfence_spawn_close_from(posix_spawn_file_actions_t *actions, int low);

#endif
