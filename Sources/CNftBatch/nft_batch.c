#include "nft_batch.h"

#include <endian.h>
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <libmnl/libmnl.h>
#include <libnftnl/common.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netlink.h>
#include <linux/netfilter/nfnetlink.h>

struct dnsfence_nft_batch {
    struct mnl_socket *socket;
    uint32_t portid;
    uint32_t seq;
    // The batch is built here, kept from one transaction to the next: a fresh buffer of a
    // kilobyte or more per transaction made malloc consolidate its free lists every time.
    char *buffer;
    size_t capacity;
};

// Elements per NEWSETELEM message: keeps each message well under a page-sized kernel skb.
enum { ELEMENTS_PER_MESSAGE = 256 };

/// A netfilter netlink socket, close-on-exec.
static struct mnl_socket *open_netfilter(int flags) {
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | flags, NETLINK_NETFILTER);
    if (fd < 0) return NULL;
    struct mnl_socket *socket = mnl_socket_fdopen(fd);
    if (socket == NULL) {
        int saved = errno;
        close(fd);
        errno = saved;
    }
    return socket;
}

dnsfence_nft_batch *dnsfence_nft_batch_open(void) {
    struct mnl_socket *socket = open_netfilter(0);
    if (socket == NULL) return NULL;
    if (mnl_socket_bind(socket, 0, MNL_SOCKET_AUTOPID) < 0) {
        int saved = errno;
        mnl_socket_close(socket);
        errno = saved;
        return NULL;
    }
    dnsfence_nft_batch *batch = calloc(1, sizeof *batch);
    if (batch == NULL) {
        mnl_socket_close(socket);
        errno = ENOMEM;
        return NULL;
    }
    batch->socket = socket;
    batch->portid = mnl_socket_get_portid(socket);
    batch->seq = (uint32_t)time(NULL);
    return batch;
}

void dnsfence_nft_batch_close(dnsfence_nft_batch *batch) {
    if (batch == NULL) return;
    mnl_socket_close(batch->socket);
    free(batch->buffer);
    free(batch);
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

// One datagram from the batch socket, waiting until `deadline` (CLOCK_MONOTONIC ms) at most:
// its length, or -1 with errno set (ETIMEDOUT when the deadline passed).
static ssize_t receive_before(dnsfence_nft_batch *batch, char *buffer, size_t size, int64_t deadline) {
    int fd = mnl_socket_get_fd(batch->socket);
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        struct timeval tv = {.tv_sec = left / 1000, .tv_usec = (left % 1000) * 1000};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ssize_t received = mnl_socket_recvfrom(batch->socket, buffer, size);
        if (received >= 0) return received;
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) errno = ETIMEDOUT;
        return -1;
    }
}

// Reads acknowledgements until `expected` messages in [first_seq, last_seq] are answered.
// Returns 0, the first kernel error (positive errno), or -1 (errno set: ETIMEDOUT or a socket
// error).
static int await_acks(dnsfence_nft_batch *batch, uint32_t begin_seq, uint32_t first_seq, uint32_t last_seq,
                      uint32_t expected, uint32_t timeout_ms) {
    char buffer[MNL_SOCKET_BUFFER_SIZE];
    int64_t deadline = now_ms() + timeout_ms;
    int first_error = 0;
    uint32_t answered = 0;
    while (answered < expected) {
        ssize_t received = receive_before(batch, buffer, sizeof buffer, deadline);
        if (received < 0) return -1;
        int length = (int)received;
        const struct nlmsghdr *header = (const struct nlmsghdr *)buffer;
        for (; mnl_nlmsg_ok(header, length); header = mnl_nlmsg_next(header, &length)) {
            if (header->nlmsg_pid != batch->portid) continue;
            if (header->nlmsg_type == NLMSG_ERROR && header->nlmsg_seq == begin_seq) {
                // The whole batch was refused before any message ran (ERESTART: the ruleset
                // generation is not the one the batch named).
                const struct nlmsgerr *error = mnl_nlmsg_get_payload(header);
                if (error->error != 0) return -error->error;
                continue;
            }
            if (header->nlmsg_seq < first_seq || header->nlmsg_seq > last_seq) continue;  // a stale reply
            if (header->nlmsg_type != NLMSG_ERROR) continue;
            const struct nlmsgerr *error = mnl_nlmsg_get_payload(header);
            answered++;
            if (error->error != 0 && first_error == 0) first_error = -error->error;
        }
    }
    return first_error;
}

int dnsfence_nft_batch_add(dnsfence_nft_batch *batch, const dnsfence_nft_set_elements *sets, uint32_t set_count,
                           uint32_t generation, uint32_t timeout_ms) {
    size_t size = 2 * 128;
    uint32_t messages = 0;
    for (uint32_t i = 0; i < set_count; i++) {
        uint32_t chunks = (sets[i].count + ELEMENTS_PER_MESSAGE - 1) / ELEMENTS_PER_MESSAGE;
        messages += chunks;
        size += chunks * (256 + strlen(sets[i].table) + strlen(sets[i].set)) + (size_t)sets[i].count * 96;
    }
    if (messages == 0) return 0;
    if (size > batch->capacity) {
        size_t capacity = batch->capacity ? batch->capacity : 4096;
        while (capacity < size) capacity *= 2;
        char *grown = malloc(capacity);
        if (grown == NULL) {
            errno = ENOMEM;
            return -1;
        }
        free(batch->buffer);
        batch->buffer = grown;
        batch->capacity = capacity;
    }
    char *buffer = batch->buffer;
    struct mnl_nlmsg_batch *out = mnl_nlmsg_batch_start(buffer, size);
    uint32_t begin_seq = batch->seq++;
    struct nlmsghdr *begin = nftnl_batch_begin(mnl_nlmsg_batch_current(out), begin_seq);
    if (generation != 0) mnl_attr_put_u32(begin, NFNL_BATCH_GENID, htonl(generation));
    mnl_nlmsg_batch_next(out);
    uint32_t first_seq = batch->seq;
    for (uint32_t i = 0; i < set_count; i++) {
        const dnsfence_nft_set_elements *group = &sets[i];
        for (uint32_t start = 0; start < group->count; start += ELEMENTS_PER_MESSAGE) {
            uint32_t end = start + ELEMENTS_PER_MESSAGE < group->count ? start + ELEMENTS_PER_MESSAGE : group->count;
            struct nlmsghdr *header = nftnl_nlmsg_build_hdr(mnl_nlmsg_batch_current(out), NFT_MSG_NEWSETELEM,
                                                            group->family, NLM_F_CREATE | NLM_F_ACK, batch->seq++);
            // The attributes written directly (as libnftnl would, without an object per element).
            mnl_attr_put_strz(header, NFTA_SET_ELEM_LIST_SET, group->set);
            mnl_attr_put_strz(header, NFTA_SET_ELEM_LIST_TABLE, group->table);
            struct nlattr *list = mnl_attr_nest_start(header, NFTA_SET_ELEM_LIST_ELEMENTS);
            for (uint32_t e = start; e < end; e++) {
                struct nlattr *item = mnl_attr_nest_start(header, NFTA_LIST_ELEM);
                struct nlattr *key = mnl_attr_nest_start(header, NFTA_SET_ELEM_KEY);
                mnl_attr_put(header, NFTA_DATA_VALUE, group->key_length,
                             group->keys + (size_t)e * group->key_length);
                mnl_attr_nest_end(header, key);
                // Timeout and expiration both: a new element gets them, and an element that is
                // already there has its timer restarted (kernels >= 6.10; older ones keep it).
                mnl_attr_put_u64(header, NFTA_SET_ELEM_TIMEOUT, htobe64(group->timeouts_ms[e]));
                mnl_attr_put_u64(header, NFTA_SET_ELEM_EXPIRATION, htobe64(group->timeouts_ms[e]));
                mnl_attr_nest_end(header, item);
            }
            mnl_attr_nest_end(header, list);
            mnl_nlmsg_batch_next(out);
        }
    }
    uint32_t last_seq = batch->seq - 1;
    nftnl_batch_end(mnl_nlmsg_batch_current(out), batch->seq++);
    mnl_nlmsg_batch_next(out);
    ssize_t sent = mnl_socket_sendto(batch->socket, mnl_nlmsg_batch_head(out), mnl_nlmsg_batch_size(out));
    mnl_nlmsg_batch_stop(out);
    if (sent < 0) return -1;
    return await_acks(batch, begin_seq, first_seq, last_seq, messages, timeout_ms);
}

struct element_keys {
    uint8_t *keys;
    uint32_t key_length;
    uint32_t count;
    uint32_t capacity;
};

static int collect_key(struct nftnl_set_elem *element, void *data) {
    struct element_keys *out = data;
    uint32_t length = 0;
    const void *key = nftnl_set_elem_get(element, NFTNL_SET_ELEM_KEY, &length);
    if (key == NULL || (length != 4 && length != 16)) return 0;
    if (out->count > 0 && length != out->key_length) return 0;
    if (out->count == out->capacity) {
        uint32_t capacity = out->capacity ? out->capacity * 2 : 64;
        uint8_t *grown = realloc(out->keys, (size_t)capacity * length);
        if (grown == NULL) return -1;
        out->keys = grown;
        out->capacity = capacity;
    }
    out->key_length = length;
    memcpy(out->keys + (size_t)out->count * length, key, length);
    out->count++;
    return 0;
}

static void report(const struct nlmsghdr *header, dnsfence_nft_event_handler handler, void *context) {
    uint16_t type = NFNL_MSG_TYPE(header->nlmsg_type);
    if (NFNL_SUBSYS_ID(header->nlmsg_type) != NFNL_SUBSYS_NFTABLES) return;
    if (type == NFT_MSG_DELSETELEM || type == NFT_MSG_DELSET) {
        struct nftnl_set *set = nftnl_set_alloc();
        if (set == NULL) return;
        int parsed = type == NFT_MSG_DELSET ? nftnl_set_nlmsg_parse(header, set) : nftnl_set_elems_nlmsg_parse(header, set);
        const char *table = nftnl_set_get_str(set, NFTNL_SET_TABLE);
        const char *name = nftnl_set_get_str(set, NFTNL_SET_NAME);
        uint8_t family = (uint8_t)nftnl_set_get_u32(set, NFTNL_SET_FAMILY);
        if (parsed >= 0 && table != NULL && name != NULL) {
            if (type == NFT_MSG_DELSET) {
                handler(context, DNSFENCE_NFT_SET_DELETED, family, table, name, NULL, 0, 0);
            } else {
                struct element_keys keys = {0};
                nftnl_set_elem_foreach(set, collect_key, &keys);
                if (keys.count > 0) {
                    handler(context, DNSFENCE_NFT_ELEMENTS_DELETED, family, table, name, keys.keys, keys.key_length,
                            keys.count);
                }
                free(keys.keys);
            }
        }
        nftnl_set_free(set);
    } else if (type == NFT_MSG_DELTABLE) {
        struct nftnl_table *table = nftnl_table_alloc();
        if (table == NULL) return;
        if (nftnl_table_nlmsg_parse(header, table) >= 0) {
            const char *name = nftnl_table_get_str(table, NFTNL_TABLE_NAME);
            uint8_t family = (uint8_t)nftnl_table_get_u32(table, NFTNL_TABLE_FAMILY);
            if (name != NULL) handler(context, DNSFENCE_NFT_TABLE_DELETED, family, name, NULL, NULL, 0, 0);
        }
        nftnl_table_free(table);
    }
}

int dnsfence_nft_batch_generation(dnsfence_nft_batch *batch, uint32_t *generation, uint32_t timeout_ms) {
    char buffer[MNL_SOCKET_BUFFER_SIZE];
    uint32_t seq = batch->seq++;
    struct nlmsghdr *request = nftnl_nlmsg_build_hdr(buffer, NFT_MSG_GETGEN, AF_UNSPEC, 0, seq);
    if (mnl_socket_sendto(batch->socket, request, request->nlmsg_len) < 0) return -1;
    int64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        ssize_t received = receive_before(batch, buffer, sizeof buffer, deadline);
        if (received < 0) return -1;
        int length = (int)received;
        const struct nlmsghdr *header = (const struct nlmsghdr *)buffer;
        for (; mnl_nlmsg_ok(header, length); header = mnl_nlmsg_next(header, &length)) {
            if (header->nlmsg_pid != batch->portid || header->nlmsg_seq != seq) continue;  // a stale reply
            if (header->nlmsg_type == NLMSG_ERROR) {
                const struct nlmsgerr *error = mnl_nlmsg_get_payload(header);
                errno = error->error != 0 ? -error->error : EPROTO;
                return -1;
            }
            if (NFNL_MSG_TYPE(header->nlmsg_type) != NFT_MSG_NEWGEN) continue;
            const struct nlattr *attribute;
            mnl_attr_for_each(attribute, header, sizeof(struct nfgenmsg)) {
                if (mnl_attr_get_type(attribute) == NFTA_GEN_ID && mnl_attr_get_payload_len(attribute) == 4) {
                    *generation = ntohl(mnl_attr_get_u32(attribute));
                    return 0;
                }
            }
            errno = EPROTO;
            return -1;
        }
    }
}

int dnsfence_nft_listen(int fd, int join) {
    int group = NFNLGRP_NFTABLES;
    return setsockopt(fd, SOL_NETLINK, join ? NETLINK_ADD_MEMBERSHIP : NETLINK_DROP_MEMBERSHIP, &group,
                      sizeof group);
}

int dnsfence_nft_monitor_open(void) {
    // A plain descriptor, no mnl wrapper: close(2) is all it takes to give it up (a retired
    // namespace's monitor), so nothing is left behind per namespace.
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_NETFILTER);
    if (fd < 0) return -errno;
    struct sockaddr_nl address = {.nl_family = AF_NETLINK, .nl_groups = 1u << (NFNLGRP_NFTABLES - 1)};
    if (bind(fd, (struct sockaddr *)&address, sizeof address) < 0) {
        int saved = errno;
        close(fd);
        return -saved;
    }
    // A large receive buffer: a flush of a big set arrives as one notification per element.
    int size = 8 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size);
    return fd;
}

int dnsfence_nft_monitor_drain(int fd, void *buffer, uint32_t size, dnsfence_nft_event_handler handler,
                               void *context) {
    for (;;) {
        ssize_t received = recv(fd, buffer, size, MSG_DONTWAIT);
        if (received < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
            if (errno == ENOBUFS) {
                handler(context, DNSFENCE_NFT_EVENTS_LOST, 0, NULL, NULL, NULL, 0, 0);
                continue;
            }
            return -errno;
        }
        handler(context, DNSFENCE_NFT_RECEIVED, 0, NULL, NULL, NULL, 0, 0);
        int length = (int)received;
        const struct nlmsghdr *header = (const struct nlmsghdr *)buffer;
        for (; mnl_nlmsg_ok(header, length); header = mnl_nlmsg_next(header, &length)) report(header, handler, context);
    }
}
