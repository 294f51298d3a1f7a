#define _GNU_SOURCE
#include "datagram.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

/// Points `messages` at the slots' buffers and peers, for receiving (room for a whole buffer and
/// any peer) or sending (the slot's length and peer).
static void prepare(struct mmsghdr *messages, struct iovec *vectors, const dnsfence_datagram *slots, int count,
                    int receiving) {
    memset(messages, 0, sizeof(struct mmsghdr) * (size_t)count);
    for (int i = 0; i < count; i++) {
        vectors[i].iov_base = slots[i].data;
        vectors[i].iov_len = receiving ? slots[i].capacity : slots[i].length;
        messages[i].msg_hdr.msg_iov = &vectors[i];
        messages[i].msg_hdr.msg_iovlen = 1;
        messages[i].msg_hdr.msg_name = (void *)&slots[i].peer;
        messages[i].msg_hdr.msg_namelen = receiving ? sizeof(slots[i].peer) : slots[i].peer_length;
    }
}

int dnsfence_recv_datagrams(int fd, dnsfence_datagram *slots, int count) {
    struct mmsghdr messages[DNSFENCE_DATAGRAM_BATCH];
    struct iovec vectors[DNSFENCE_DATAGRAM_BATCH];
    if (count > DNSFENCE_DATAGRAM_BATCH) count = DNSFENCE_DATAGRAM_BATCH;
    prepare(messages, vectors, slots, count, 1);
    int n;
    do {
        n = recvmmsg(fd, messages, (unsigned)count, MSG_DONTWAIT, NULL);
    } while (n < 0 && errno == EINTR);
    if (n < 0) return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -errno;
    for (int i = 0; i < n; i++) {
        slots[i].length = messages[i].msg_len;
        slots[i].peer_length = messages[i].msg_hdr.msg_namelen;
        slots[i].truncated = (messages[i].msg_hdr.msg_flags & MSG_TRUNC) != 0;
    }
    return n;
}

int dnsfence_send_datagrams(int fd, const dnsfence_datagram *slots, int count) {
    struct mmsghdr messages[DNSFENCE_DATAGRAM_BATCH];
    struct iovec vectors[DNSFENCE_DATAGRAM_BATCH];
    if (count > DNSFENCE_DATAGRAM_BATCH) count = DNSFENCE_DATAGRAM_BATCH;
    prepare(messages, vectors, slots, count, 0);
    int n;
    do {
        n = sendmmsg(fd, messages, (unsigned)count, MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : n;
}

int dnsfence_datagram_socket(const struct sockaddr *address, uint32_t address_length, int reuse_port) {
    int fd = socket(address->sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1;
    if ((reuse_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) ||
        (address->sa_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0) ||
        bind(fd, address, address_length) < 0) {
        int error = errno;
        close(fd);
        return -error;
    }
    /* Room for a burst: a flood from one client must not overflow the queue its neighbours'
       queries wait in (the default, about 200 KiB, holds a few hundred datagrams: a
       millisecond of a flood). Above net.core.rmem_max only with CAP_NET_ADMIN; best effort. */
    int buffer = 4 << 20;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buffer, sizeof(buffer)) < 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buffer, sizeof(buffer));
    return fd;
}

int dnsfence_datagram_local(int fd, struct sockaddr_in6 *address, uint32_t *address_length) {
    socklen_t length = sizeof(*address);
    if (getsockname(fd, (struct sockaddr *)address, &length) < 0) return -errno;
    *address_length = length;
    return 0;
}

int dnsfence_epoll_create(void) {
    int fd = epoll_create1(EPOLL_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int dnsfence_epoll_control(int epoll, int op, int fd, uint32_t events, uint64_t token) {
    struct epoll_event event = {.events = events, .data.u64 = token};
    int kernel_op = op == DNSFENCE_EPOLL_ADD ? EPOLL_CTL_ADD : op == DNSFENCE_EPOLL_DEL ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
    return epoll_ctl(epoll, kernel_op, fd, &event) < 0 ? -errno : 0;
}

int dnsfence_epoll_wait(int epoll, uint64_t *tokens, uint32_t *events, int max, int timeout_ms) {
    struct epoll_event ready[64];
    if (max > 64) max = 64;
    int n = epoll_wait(epoll, ready, max, timeout_ms);
    if (n < 0) return errno == EINTR ? 0 : -errno;
    for (int i = 0; i < n; i++) {
        tokens[i] = ready[i].data.u64;
        events[i] = ready[i].events;
    }
    return n;
}

int dnsfence_eventfd(void) {
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

void dnsfence_eventfd_signal(int fd) {
    uint64_t one = 1;
    ssize_t ignored = write(fd, &one, sizeof(one));
    (void)ignored;
}

void dnsfence_eventfd_drain(int fd) {
    uint64_t value;
    ssize_t ignored = read(fd, &value, sizeof(value));
    (void)ignored;
}

int dnsfence_stream_listener(const struct sockaddr *address, uint32_t address_length, int backlog) {
    int fd = socket(address->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        (address->sa_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0) ||
        bind(fd, address, address_length) < 0 || listen(fd, backlog) < 0) {
        int error = errno;
        close(fd);
        return -error;
    }
    return fd;
}

int dnsfence_shed_connections(int listener, int *spare, int max) {
    if (*spare >= 0) {
        close(*spare);
        *spare = -1;
    }
    int shed = 0;
    while (shed < max) {
        int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            break;
        }
        close(fd);
        shed++;
    }
    *spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return shed;
}
