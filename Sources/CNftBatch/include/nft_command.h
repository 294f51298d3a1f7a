#ifndef DNSFENCE_NFT_COMMAND_H
#define DNSFENCE_NFT_COMMAND_H
// One nft text command (set-up, listing, deletion) through libnftables, in the calling thread's
// network namespace, on a thread of its own whose descriptor table is private and emptied.
//
// libnftables waits on its netlink socket with select(2), which aborts the process for a
// descriptor at or above FD_SETSIZE (1024); a dnsfence serving many sandboxes or TCP clients has
// more open than that, and other threads (accepting connections, opening files) take any low
// number that frees up. In a private table nobody else takes a number, so libnftables' socket is
// always descriptor 3 or so, however many the process has open.

/// Runs `command`. Returns 0 and the output in `*output`, or 1 (libnftables refused it) and its
/// error text in `*error`, or -errno if the thread could not be made or isolated (nothing ran).
/// The texts are malloc'd (NULL when empty); the caller frees them.
int dnsfence_nft_command(const char *command, char **output, char **error);

#endif
