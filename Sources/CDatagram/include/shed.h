#ifndef DNSFENCE_SHED_H
#define DNSFENCE_SHED_H

#include <stdint.h>

/// Kernel shedding for the rate limiter: an eBPF socket filter on every UDP listener socket
/// drops the datagrams of a client (or client prefix) that dnsfence has found over its limit,
/// before they are queued on the socket. The decision stays in dnsfence (its table, its
/// clock); the kernel only carries it out.
///
/// Three maps: `config` (one entry: enabled, the IPv4 and IPv6 prefix shifts, the pass-through
/// mask), `blocks` (LRU hash: { key, kind } → { until, interval, expires }, CLOCK_MONOTONIC
/// nanoseconds: dropped before `until`; at or after it one datagram passes and moves `until` on
/// by `interval`; ignored from `expires`) and `counter` (one 64-bit count of datagrams
/// dropped). A key is what the rate limiter keys its table by: kind 0 an IPv4 address, 1 its
/// prefix (address >> shift), 2 the high 64 bits of an IPv6 address, 3 its prefix.
typedef struct {
    int config;
    int blocks;
    int counter;
    int program4;
    int program6;
} dnsfence_shed;

/// Creates the maps and loads both programs (CAP_BPF or CAP_SYS_ADMIN). 0, or -errno with a
/// description of the step that failed (and the verifier's last words) in `error`.
int dnsfence_shed_create(dnsfence_shed *shed, uint32_t block_entries, char *error, uint32_t error_length);

/// Closes every descriptor of `shed`.
void dnsfence_shed_close(dnsfence_shed *shed);

/// Sets what the programs do: `enabled` 0 passes everything; `pass_mask` + 1 is how many of a
/// blocked client's datagrams one in passes anyway (0: none). 0 or -errno.
int dnsfence_shed_configure(const dnsfence_shed *shed, uint32_t enabled, uint32_t ipv4_shift, uint32_t ipv6_shift,
                            uint32_t pass_mask);

/// Attaches the IPv4 (`ipv6` 0) or IPv6 program to the socket `fd` (SO_ATTACH_BPF). 0 or -errno.
int dnsfence_shed_attach(const dnsfence_shed *shed, int fd, int ipv6);

/// Drops datagrams of `key` (of `kind`) until `until_ns`, then lets one through every
/// `interval_ns`, until `expires_ns` (CLOCK_MONOTONIC). 0 or -errno.
int dnsfence_shed_block(const dnsfence_shed *shed, uint64_t key, uint32_t kind, uint64_t until_ns,
                        uint64_t interval_ns, uint64_t expires_ns);

/// Datagrams dropped so far.
uint64_t dnsfence_shed_dropped(const dnsfence_shed *shed);

#endif
