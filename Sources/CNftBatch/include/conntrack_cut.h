#ifndef DNSFENCE_CONNTRACK_CUT_H
#define DNSFENCE_CONNTRACK_CUT_H
// Deleting conntrack entries by destination over ctnetlink (libmnl), in the calling thread's
// network namespace: what `revoke: connections` does after a revocation, so that flows
// established to a revoked address meet the firewall's set check again.

#include <stdint.h>

/// Deletes every conntrack entry of `family` (AF_INET: 4-byte keys, AF_INET6: 16-byte keys)
/// whose original-direction destination is one of the `count` addresses at `addresses` (back
/// to back, network order). Dumps the table, then deletes the matching entries one by one (an
/// entry that is gone meanwhile is no error). Returns how many were deleted, or -1 with errno
/// set (EPROTONOSUPPORT: no conntrack in this kernel or namespace). Waits at most `timeout_ms`
/// for each reply.
int dnsfence_conntrack_cut(uint8_t family, const uint8_t *addresses, uint32_t count, uint32_t timeout_ms);

#endif
