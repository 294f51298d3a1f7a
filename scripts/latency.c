/* Client-side DNS latency at a fixed query rate, for the p99 target of docs/performance.md.
 *
 *   latency SERVER PORT FILE RATE SECONDS   send the names of a dnsperf data file ("name TYPE"
 *                                           per line) round-robin over UDP at RATE queries/s for
 *                                           SECONDS; match replies by ID; print percentiles
 *   latency --echo PORT                     a UDP server that returns every datagram as it came:
 *                                           the floor any server can reach on this machine
 * With LATENCY_TRACE=FILE, the client also writes one line per answer to FILE: the time it was
 * sent (seconds from the start) and its latency (ms), to see when the tail happens. With
 * LATENCY_SOURCE=ADDR it sends from that address (a flooder in another /24:
 * scripts/bench-ratelimit.sh).
 *
 * The client never sleeps: it spins on the clock and a non-blocking socket, so a reply is
 * timestamped when it arrives, not when the client's own CPU wakes up. Pin it to a CPU of its
 * own (scripts/bench-scale.sh does). With LATENCY_SLEEP=1 it sleeps in ppoll(2) until its next
 * query is due or a reply comes, as real clients do: for a CPU it shares (with a flooder, in
 * scripts/bench-ratelimit.sh), where two spinning processes would each wait out the other's
 * time slice and measure the scheduler. Built by scripts/bench-scale.sh with `cc -O2`. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void fail(const char *what) {
    perror(what);
    exit(2);
}

static _Noreturn void echo(int port) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) fail("socket");
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0) fail("bind");
    unsigned char buf[65536];
    for (;;) {
        struct sockaddr_in from;
        socklen_t len = sizeof from;
        ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &len);
        if (n < 0) {
            if (errno == EINTR) continue;
            fail("recvfrom");
        }
        if (n >= 3) buf[2] |= 0x80; /* QR: it is an answer */
        sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&from, len);
    }
}

struct query {
    unsigned char wire[300];
    size_t length;
};

/* One query in wire form with an EDNS OPT record (1,232 bytes), ID left for the sender. */
static int encode(const char *name, const char *type, struct query *q) {
    static const struct { const char *name; uint16_t code; } types[] = {
        {"A", 1}, {"AAAA", 28}, {"TXT", 16}, {"MX", 15}, {"CNAME", 5}, {"NS", 2}, {"SOA", 6}};
    uint16_t qtype = 0;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (strcmp(types[i].name, type) == 0) qtype = types[i].code;
    if (qtype == 0) return -1;
    unsigned char *p = q->wire;
    static const unsigned char header[12] = {0, 0, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1};
    memcpy(p, header, sizeof header);
    p += sizeof header;
    const char *label = name;
    while (*label && strcmp(label, ".") != 0) {
        const char *dot = strchr(label, '.');
        size_t n = dot ? (size_t)(dot - label) : strlen(label);
        if (n == 0 || n > 63 || p + n + 1 > q->wire + 255) return -1;
        *p++ = (unsigned char)n;
        memcpy(p, label, n);
        p += n;
        label += n + (dot ? 1 : 0);
    }
    *p++ = 0;
    *p++ = (unsigned char)(qtype >> 8);
    *p++ = (unsigned char)qtype;
    *p++ = 0;
    *p++ = 1;
    static const unsigned char opt[11] = {0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0};
    memcpy(p, opt, sizeof opt);
    p += sizeof opt;
    q->length = (size_t)(p - q->wire);
    return 0;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--echo") == 0) echo(atoi(argv[2]));
    if (argc != 6) {
        fprintf(stderr, "usage: latency SERVER PORT FILE RATE SECONDS | latency --echo PORT\n");
        return 2;
    }
    double rate = atof(argv[4]), seconds = atof(argv[5]);
    if (rate <= 0 || seconds <= 0) {
        fprintf(stderr, "latency: RATE and SECONDS must be positive\n");
        return 2;
    }
    FILE *file = fopen(argv[3], "r");
    if (!file) fail(argv[3]);
    size_t capacity = 1024, count = 0;
    struct query *queries = malloc(capacity * sizeof *queries);
    char line[512], name[300], type[16];
    for (unsigned number = 1; fgets(line, sizeof line, file); number++) {
        if (sscanf(line, "%299s %15s", name, type) != 2) continue;
        if (count == capacity) queries = realloc(queries, (capacity *= 2) * sizeof *queries);
        if (!queries) fail("realloc");
        if (encode(name, type, &queries[count]) != 0) {
            fprintf(stderr, "%s:%u: cannot encode '%s %s'\n", argv[3], number, name, type);
            return 2;
        }
        count++;
    }
    fclose(file);
    if (count == 0) {
        fprintf(stderr, "%s: no queries\n", argv[3]);
        return 2;
    }

    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    if (fd < 0) fail("socket");
    int buffer = 1 << 22;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buffer, sizeof buffer);
    struct sockaddr_in server = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
    if (inet_pton(AF_INET, argv[1], &server.sin_addr) != 1) {
        fprintf(stderr, "latency: '%s' is not an IPv4 address\n", argv[1]);
        return 2;
    }
    const char *source = getenv("LATENCY_SOURCE");
    if (source && *source) {
        struct sockaddr_in local = {.sin_family = AF_INET};
        if (inet_pton(AF_INET, source, &local.sin_addr) != 1) {
            fprintf(stderr, "latency: LATENCY_SOURCE '%s' is not an IPv4 address\n", source);
            return 2;
        }
        if (bind(fd, (struct sockaddr *)&local, sizeof local) != 0) fail("bind");
    }
    if (connect(fd, (struct sockaddr *)&server, sizeof server) != 0) fail("connect");

    size_t total = (size_t)(rate * seconds), answered = 0, late = 0, errors = 0;
    double *latencies = malloc(total * sizeof *latencies), *sent_offsets = malloc(total * sizeof *sent_offsets);
    if (!latencies || !sent_offsets) fail("malloc");
    static double sent_at[65536]; /* by ID; 0 = nothing outstanding */
    double interval = 1.0 / rate, start = now_seconds(), next = start, deadline = 0;
    size_t sent = 0;
    unsigned char reply[65536];
    const char *sleep_mode = getenv("LATENCY_SLEEP");
    int sleeps = sleep_mode && *sleep_mode && strcmp(sleep_mode, "0") != 0;
    for (;;) {
        double t = now_seconds();
        if (sent < total && t >= next) {
            struct query *q = &queries[sent % count];
            uint16_t id = (uint16_t)(sent + 1);
            q->wire[0] = (unsigned char)(id >> 8);
            q->wire[1] = (unsigned char)id;
            if (sent_at[id] != 0) late++; /* still unanswered after 65,536 queries: count it lost */
            sent_at[id] = now_seconds();
            if (send(fd, q->wire, q->length, 0) < 0) errors++;
            sent++;
            next += interval;
            if (sent == total) deadline = now_seconds() + 2;
        }
        ssize_t n = recv(fd, reply, sizeof reply, 0);
        if (n >= 12) {
            double arrived = now_seconds();
            uint16_t id = (uint16_t)(reply[0] << 8 | reply[1]);
            if (sent_at[id] != 0) {
                sent_offsets[answered] = sent_at[id] - start;
                latencies[answered++] = arrived - sent_at[id];
                sent_at[id] = 0;
            }
        } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            errors++;
        } else if (n < 0 && sleeps) {
            /* Nothing to read: sleep until the next query is due (or the end), or a reply comes. */
            double wait = (sent < total ? next : deadline) - now_seconds();
            if (wait > 0) {
                struct timespec timeout = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
                struct pollfd ready = {.fd = fd, .events = POLLIN};
                ppoll(&ready, 1, &timeout, NULL);
            }
        }
        if (sent == total && (answered + late == total || t > deadline)) break;
    }
    double elapsed = now_seconds() - start;
    if (answered == 0) {
        printf("0 answers of %zu queries\n", total);
        return 1;
    }
    const char *trace = getenv("LATENCY_TRACE");
    if (trace && *trace) {
        FILE *out = fopen(trace, "w");
        if (!out) fail(trace);
        for (size_t i = 0; i < answered; i++) fprintf(out, "%.6f %.3f\n", sent_offsets[i], latencies[i] * 1e3);
        fclose(out);
    }
    qsort(latencies, answered, sizeof *latencies, by_value);
#define PCT(p) (latencies[(size_t)((p) / 100.0 * (double)answered) < answered ? (size_t)((p) / 100.0 * (double)answered) : answered - 1] * 1e3)
    printf("%zu answers in %.1f s (%.0f/s), %zu unanswered, %zu socket errors; "
           "latency ms p50 %.3f p90 %.3f p99 %.3f p99.9 %.3f max %.3f\n",
           answered, elapsed, (double)answered / elapsed, total - answered, errors, PCT(50), PCT(90),
           PCT(99), PCT(99.9), latencies[answered - 1] * 1e3);
    return 0;
}
