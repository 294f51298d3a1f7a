#ifndef DNSFENCE_NFT_BATCH_H
#define DNSFENCE_NFT_BATCH_H
// Set-element additions written straight to the kernel as one nfnetlink batch (libnftnl frames
// the batch and the message headers, the element attributes are written with libmnl, which
// also owns the socket): no command text to parse, no ruleset cache to refresh (what a
// libnftables `add element` transaction spends most of its time on), no object per element.

#include <stddef.h>
#include <stdint.h>

/// A netlink socket into nf_tables in the calling thread's network namespace.
typedef struct dnsfence_nft_batch dnsfence_nft_batch;

/// The elements for one set: `count` keys of `key_length` bytes (4: IPv4, 16: IPv6) in network
/// order, back to back, and a timeout in milliseconds for each.
typedef struct {
    uint8_t family;  // NFPROTO_INET (1), NFPROTO_IPV4 (2), NFPROTO_IPV6 (10)
    const char *table;
    const char *set;
    uint32_t key_length;
    uint32_t count;
    const uint8_t *keys;
    const uint64_t *timeouts_ms;
} dnsfence_nft_set_elements;

/// Opens the socket; NULL with errno set on failure.
dnsfence_nft_batch *dnsfence_nft_batch_open(void);
void dnsfence_nft_batch_close(dnsfence_nft_batch *batch);

/// Adds (or, for elements already present, refreshes the timeout of) every element in one
/// transaction: all or nothing. Returns 0, or a positive errno from the kernel for the first
/// message it refused (ENOENT: no such set or table, ENOSPC/ENFILE: set full, EINVAL: wrong key
/// type; ERESTART: `generation` is not 0 and the ruleset is no longer at that generation, so
/// nothing ran), or -1 for a local failure (errno set). Waits for the kernel's acknowledgement
/// of every message, at most `timeout_ms`.
int dnsfence_nft_batch_add(dnsfence_nft_batch *batch, const dnsfence_nft_set_elements *sets, uint32_t set_count,
                           uint32_t generation, uint32_t timeout_ms);

/// The ruleset generation (NFT_MSG_GETGEN): 0, or -1 with errno set.
int dnsfence_nft_batch_generation(dnsfence_nft_batch *batch, uint32_t *generation, uint32_t timeout_ms);

/// Joins (`join` non-zero) or leaves the nf_tables notification group on a monitor's socket:
/// 0, or -1 with errno set. While no socket in the namespace is in the group, the kernel builds
/// no change notifications at all.
int dnsfence_nft_listen(int fd, int join);

/// What a deletion notification removed.
typedef enum {
    DNSFENCE_NFT_ELEMENTS_DELETED = 0,  // `count` keys of `key_length` bytes from one set
    DNSFENCE_NFT_SET_DELETED = 1,
    DNSFENCE_NFT_TABLE_DELETED = 2,     // `set` is NULL
    DNSFENCE_NFT_EVENTS_LOST = 3,       // the socket overflowed: assume anything may be gone
    DNSFENCE_NFT_RECEIVED = 4,          // a datagram of notifications arrived (before parsing)
} dnsfence_nft_event_kind;

typedef void (*dnsfence_nft_event_handler)(void *context, dnsfence_nft_event_kind kind, uint8_t family,
                                           const char *table, const char *set, const uint8_t *keys,
                                           uint32_t key_length, uint32_t count);

/// Opens a socket that receives nf_tables change notifications in the calling thread's network
/// namespace (non-blocking, close-on-exec): its descriptor, or -errno.
int dnsfence_nft_monitor_open(void);

/// Reads every notification waiting on a monitor's socket into `buffer` and reports deletions of
/// set elements, sets and tables (additions are skipped by message type, never parsed), then
/// returns 0; or -errno if the socket fails.
int dnsfence_nft_monitor_drain(int fd, void *buffer, uint32_t size, dnsfence_nft_event_handler handler,
                               void *context);

#endif
