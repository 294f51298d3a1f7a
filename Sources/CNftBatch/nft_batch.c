#include "nft_batch.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

#include <libmnl/libmnl.h>
#include <libnftnl/common.h>
#include <libnftnl/set.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netlink.h>

struct dnsfence_nft_batch {
    struct mnl_socket *socket;
    uint32_t portid;
    uint32_t seq;
};

// Elements per NEWSETELEM message: keeps each message well under a page-sized kernel skb.
enum { ELEMENTS_PER_MESSAGE = 256 };

dnsfence_nft_batch *dnsfence_nft_batch_open(void) {
    struct mnl_socket *socket = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
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
    free(batch);
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

// Reads acknowledgements until `expected` messages in [first_seq, last_seq] are answered.
// Returns 0, the first kernel error (positive errno), or -1 (errno set: ETIMEDOUT or a socket
// error).
static int await_acks(dnsfence_nft_batch *batch, uint32_t first_seq, uint32_t last_seq, uint32_t expected,
                      uint32_t timeout_ms) {
    char buffer[MNL_SOCKET_BUFFER_SIZE];
    int fd = mnl_socket_get_fd(batch->socket);
    int64_t deadline = now_ms() + timeout_ms;
    int first_error = 0;
    uint32_t answered = 0;
    while (answered < expected) {
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        struct timeval tv = {.tv_sec = left / 1000, .tv_usec = (left % 1000) * 1000};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ssize_t received = mnl_socket_recvfrom(batch->socket, buffer, sizeof buffer);
        if (received < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) errno = ETIMEDOUT;
            return -1;
        }
        int length = (int)received;
        const struct nlmsghdr *header = (const struct nlmsghdr *)buffer;
        for (; mnl_nlmsg_ok(header, length); header = mnl_nlmsg_next(header, &length)) {
            if (header->nlmsg_pid != batch->portid) continue;
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
                           uint32_t timeout_ms) {
    size_t size = 2 * 128;
    uint32_t messages = 0;
    for (uint32_t i = 0; i < set_count; i++) {
        uint32_t chunks = (sets[i].count + ELEMENTS_PER_MESSAGE - 1) / ELEMENTS_PER_MESSAGE;
        messages += chunks;
        size += chunks * (256 + strlen(sets[i].table) + strlen(sets[i].set)) + (size_t)sets[i].count * 96;
    }
    if (messages == 0) return 0;
    char *buffer = malloc(size);
    if (buffer == NULL) {
        errno = ENOMEM;
        return -1;
    }
    struct mnl_nlmsg_batch *out = mnl_nlmsg_batch_start(buffer, size);
    nftnl_batch_begin(mnl_nlmsg_batch_current(out), batch->seq++);
    mnl_nlmsg_batch_next(out);
    uint32_t first_seq = batch->seq;
    for (uint32_t i = 0; i < set_count; i++) {
        const dnsfence_nft_set_elements *group = &sets[i];
        for (uint32_t start = 0; start < group->count; start += ELEMENTS_PER_MESSAGE) {
            struct nftnl_set *set = nftnl_set_alloc();
            if (set == NULL) {
                free(buffer);
                errno = ENOMEM;
                return -1;
            }
            nftnl_set_set_str(set, NFTNL_SET_TABLE, group->table);
            nftnl_set_set_str(set, NFTNL_SET_NAME, group->set);
            uint32_t end = start + ELEMENTS_PER_MESSAGE < group->count ? start + ELEMENTS_PER_MESSAGE : group->count;
            for (uint32_t e = start; e < end; e++) {
                struct nftnl_set_elem *element = nftnl_set_elem_alloc();
                if (element == NULL) {
                    nftnl_set_free(set);
                    free(buffer);
                    errno = ENOMEM;
                    return -1;
                }
                nftnl_set_elem_set(element, NFTNL_SET_ELEM_KEY, group->keys + (size_t)e * group->key_length,
                                   group->key_length);
                // Timeout and expiration both: a new element gets them, and an element that is
                // already there has its timer restarted (kernels >= 6.10; older ones keep it).
                nftnl_set_elem_set_u64(element, NFTNL_SET_ELEM_TIMEOUT, group->timeouts_ms[e]);
                nftnl_set_elem_set_u64(element, NFTNL_SET_ELEM_EXPIRATION, group->timeouts_ms[e]);
                nftnl_set_elem_add(set, element);
            }
            struct nlmsghdr *header = nftnl_nlmsg_build_hdr(mnl_nlmsg_batch_current(out), NFT_MSG_NEWSETELEM,
                                                            group->family, NLM_F_CREATE | NLM_F_ACK, batch->seq++);
            nftnl_set_elems_nlmsg_build_payload(header, set);
            nftnl_set_free(set);
            mnl_nlmsg_batch_next(out);
        }
    }
    uint32_t last_seq = batch->seq - 1;
    nftnl_batch_end(mnl_nlmsg_batch_current(out), batch->seq++);
    mnl_nlmsg_batch_next(out);
    ssize_t sent = mnl_socket_sendto(batch->socket, mnl_nlmsg_batch_head(out), mnl_nlmsg_batch_size(out));
    mnl_nlmsg_batch_stop(out);
    free(buffer);
    if (sent < 0) return -1;
    return await_acks(batch, first_seq, last_seq, messages, timeout_ms);
}
