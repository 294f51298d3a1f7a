#ifndef DNSFENCE_DATAGRAM_H
#define DNSFENCE_DATAGRAM_H

#include <stdint.h>
#include <netinet/in.h>

/// One datagram slot for batched I/O: `data` points at `capacity` bytes owned by the caller.
/// Receiving fills `length`, `peer` (a sockaddr_in for IPv4, a sockaddr_in6 for IPv6) and
/// `truncated`; sending reads `length` bytes and the peer.
typedef struct {
    unsigned char *data;
    uint32_t capacity;
    uint32_t length;
    struct sockaddr_in6 peer;
    uint32_t peer_length;
    int32_t truncated;
} dnsfence_datagram;

/// The most slots one call handles (more are ignored).
#define DNSFENCE_DATAGRAM_BATCH 64

/// recvmmsg(2) without blocking: the number of datagrams read, 0 if none is waiting, or -errno.
int dnsfence_recv_datagrams(int fd, dnsfence_datagram *slots, int count);

/// sendmmsg(2) without blocking: the number of datagrams the kernel took (it stops at the
/// first that fails), or -errno if the first one failed.
int dnsfence_send_datagrams(int fd, const dnsfence_datagram *slots, int count);

/// A non-blocking, close-on-exec UDP socket (SO_REUSEPORT if `reuse_port`; IPV6_V6ONLY for
/// IPv6) bound to `address`, with a 4 MiB receive buffer where allowed; the descriptor, or -errno.
int dnsfence_datagram_socket(const struct sockaddr *address, uint32_t address_length, int reuse_port);

/// The address a socket is bound to (for port 0), or -errno.
int dnsfence_datagram_local(int fd, struct sockaddr_in6 *address, uint32_t *address_length);

/// A TCP listening socket on `address` (SO_REUSEADDR; IPv6 only for IPv6; non-blocking,
/// close-on-exec) with `backlog`, or -errno.
int dnsfence_stream_listener(const struct sockaddr *address, uint32_t address_length, int backlog);
/// Out of descriptors (accept failed with EMFILE): closes the spare descriptor `*spare` (kept
/// open for this moment), accepts and at once closes up to `max` pending connections on
/// `listener`, so that they are refused instead of left to make the listener readable forever,
/// and opens the spare again (-1 if it could not). Returns how many were shed.
int dnsfence_shed_connections(int listener, int *spare, int max);

/// epoll and eventfd without the packed `struct epoll_event` crossing into Swift.
int dnsfence_epoll_create(void);
int dnsfence_epoll_control(int epoll, int op, int fd, uint32_t events, uint64_t token);
/// Waits up to `timeout_ms` (-1: forever); fills `tokens` and `events`; the count or -errno.
int dnsfence_epoll_wait(int epoll, uint64_t *tokens, uint32_t *events, int max, int timeout_ms);
int dnsfence_eventfd(void);
void dnsfence_eventfd_signal(int fd);
void dnsfence_eventfd_drain(int fd);

enum {
    DNSFENCE_EPOLL_ADD = 1,
    DNSFENCE_EPOLL_DEL = 2,
    DNSFENCE_EPOLL_MOD = 3,
    DNSFENCE_EPOLLIN = 0x001,
    DNSFENCE_EPOLLOUT = 0x004,
    DNSFENCE_EPOLLERR = 0x008,
    DNSFENCE_EPOLLHUP = 0x010,
};

#endif
