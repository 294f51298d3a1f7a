#include "conntrack_cut.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <libmnl/libmnl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netlink.h>

// One matching entry: its CTA_TUPLE_ORIG and CTA_ZONE attributes as the dump gave them, which
// is what a delete request names an entry by.
typedef struct {
    char *attributes;
    size_t length;
} doomed_entry;

typedef struct {
    uint8_t family;
    const uint8_t *addresses;
    uint32_t count;
    uint32_t key_length;
    doomed_entry *entries;
    size_t used;
    size_t capacity;
    int failed;  // ENOMEM while collecting
} cut_state;

static int wanted(const cut_state *state, const void *address) {
    for (uint32_t i = 0; i < state->count; i++) {
        if (memcmp(state->addresses + (size_t)i * state->key_length, address, state->key_length) == 0) return 1;
    }
    return 0;
}

// The original direction's destination address, or NULL.
static const void *original_destination(const struct nlattr *tuple, uint8_t family) {
    const struct nlattr *nested;
    mnl_attr_for_each_nested(nested, tuple) {
        if (mnl_attr_get_type(nested) != CTA_TUPLE_IP) continue;
        const struct nlattr *ip;
        mnl_attr_for_each_nested(ip, nested) {
            uint16_t type = mnl_attr_get_type(ip);
            if (family == AF_INET && type == CTA_IP_V4_DST && mnl_attr_get_payload_len(ip) == 4)
                return mnl_attr_get_payload(ip);
            if (family == AF_INET6 && type == CTA_IP_V6_DST && mnl_attr_get_payload_len(ip) == 16)
                return mnl_attr_get_payload(ip);
        }
    }
    return NULL;
}

static int collect(const struct nlmsghdr *message, void *context) {
    cut_state *state = context;
    const struct nlattr *tuple = NULL, *zone = NULL, *attribute;
    mnl_attr_for_each(attribute, message, sizeof(struct nfgenmsg)) {
        uint16_t type = mnl_attr_get_type(attribute);
        if (type == CTA_TUPLE_ORIG) tuple = attribute;
        if (type == CTA_ZONE) zone = attribute;
    }
    if (tuple == NULL) return MNL_CB_OK;
    const void *destination = original_destination(tuple, state->family);
    if (destination == NULL || !wanted(state, destination)) return MNL_CB_OK;
    if (state->used == state->capacity) {
        size_t capacity = state->capacity ? state->capacity * 2 : 16;
        doomed_entry *grown = realloc(state->entries, capacity * sizeof *grown);
        if (grown == NULL) {
            state->failed = ENOMEM;
            return MNL_CB_ERROR;
        }
        state->entries = grown;
        state->capacity = capacity;
    }
    size_t tuple_length = MNL_ALIGN(tuple->nla_len), zone_length = zone ? MNL_ALIGN(zone->nla_len) : 0;
    char *copy = malloc(tuple_length + zone_length);
    if (copy == NULL) {
        state->failed = ENOMEM;
        return MNL_CB_ERROR;
    }
    memcpy(copy, tuple, tuple->nla_len);
    memset(copy + tuple->nla_len, 0, tuple_length - tuple->nla_len);
    if (zone) {
        memcpy(copy + tuple_length, zone, zone->nla_len);
        memset(copy + tuple_length + zone->nla_len, 0, zone_length - zone->nla_len);
    }
    state->entries[state->used++] = (doomed_entry){copy, tuple_length + zone_length};
    return MNL_CB_OK;
}

static int readable(struct mnl_socket *socket, uint32_t timeout_ms) {
    struct pollfd descriptor = {.fd = mnl_socket_get_fd(socket), .events = POLLIN};
    int ready = poll(&descriptor, 1, (int)timeout_ms);
    if (ready == 0) errno = ETIMEDOUT;
    return ready > 0;
}

// Sends one request and runs `callback` over its replies until the dump ends or the ack comes.
static int exchange(struct mnl_socket *socket, struct nlmsghdr *request, uint32_t portid, mnl_cb_t callback,
                    void *context, uint32_t timeout_ms) {
    if (mnl_socket_sendto(socket, request, request->nlmsg_len) < 0) return -1;
    char buffer[32768];  // MNL_SOCKET_DUMP_SIZE in newer libmnl
    for (;;) {
        if (!readable(socket, timeout_ms)) return -1;
        ssize_t received = mnl_socket_recvfrom(socket, buffer, sizeof buffer);
        if (received < 0) return -1;
        int rc = mnl_cb_run(buffer, (size_t)received, request->nlmsg_seq, portid, callback, context);
        if (rc <= MNL_CB_STOP) return rc;
    }
}

static struct nlmsghdr *start_message(char *buffer, uint16_t type, uint16_t flags, uint8_t family, uint32_t seq) {
    struct nlmsghdr *message = mnl_nlmsg_put_header(buffer);
    message->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | type;
    message->nlmsg_flags = NLM_F_REQUEST | flags;
    message->nlmsg_seq = seq;
    struct nfgenmsg *header = mnl_nlmsg_put_extra_header(message, sizeof *header);
    header->nfgen_family = family;
    header->version = NFNETLINK_V0;
    header->res_id = 0;
    return message;
}

int dnsfence_conntrack_cut(uint8_t family, const uint8_t *addresses, uint32_t count, uint32_t timeout_ms) {
    if (family != AF_INET && family != AF_INET6) {
        errno = EAFNOSUPPORT;
        return -1;
    }
    if (count == 0) return 0;
    struct mnl_socket *socket = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
    if (socket == NULL) return -1;
    if (mnl_socket_bind(socket, 0, MNL_SOCKET_AUTOPID) < 0) {
        int saved = errno;
        mnl_socket_close(socket);
        errno = saved;
        return -1;
    }
    uint32_t portid = mnl_socket_get_portid(socket), seq = (uint32_t)time(NULL);
    cut_state state = {family, addresses, count, family == AF_INET ? 4 : 16, NULL, 0, 0, 0};
    char buffer[MNL_SOCKET_BUFFER_SIZE];
    struct nlmsghdr *dump = start_message(buffer, IPCTNL_MSG_CT_GET, NLM_F_DUMP, family, seq);
    int rc = exchange(socket, dump, portid, collect, &state, timeout_ms);
    int saved = errno;
    int deleted = 0;
    if (rc >= 0 && !state.failed) {
        for (size_t i = 0; i < state.used; i++) {
            struct nlmsghdr *request = start_message(buffer, IPCTNL_MSG_CT_DELETE, NLM_F_ACK, family, ++seq);
            char *tail = mnl_nlmsg_get_payload_tail(request);
            memcpy(tail, state.entries[i].attributes, state.entries[i].length);
            request->nlmsg_len += (uint32_t)state.entries[i].length;
            if (exchange(socket, request, portid, NULL, NULL, timeout_ms) >= 0) {
                deleted++;
            } else if (errno != ENOENT) {
                rc = -1;
                saved = errno;
                break;
            }
        }
    } else if (state.failed) {
        rc = -1;
        saved = state.failed;
    }
    for (size_t i = 0; i < state.used; i++) free(state.entries[i].attributes);
    free(state.entries);
    mnl_socket_close(socket);
    if (rc < 0) {
        errno = saved;
        return -1;
    }
    return deleted;
}
