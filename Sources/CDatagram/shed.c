#define _GNU_SOURCE
#include "shed.h"

#include <errno.h>
#include <linux/bpf.h>
#include <linux/filter.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SO_ATTACH_BPF
#define SO_ATTACH_BPF 50
#endif

static long bpf_call(int command, union bpf_attr *attr) {
    return syscall(__NR_bpf, command, attr, sizeof(*attr));
}

static int map_create(uint32_t type, uint32_t key, uint32_t value, uint32_t entries, const char *name) {
    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.map_type = type;
    attr.key_size = key;
    attr.value_size = value;
    attr.max_entries = entries;
    strncpy(attr.map_name, name, sizeof(attr.map_name) - 1);
    long fd = bpf_call(BPF_MAP_CREATE, &attr);
    return fd < 0 ? -errno : (int)fd;
}

static int map_update(int map, const void *key, const void *value) {
    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.map_fd = (uint32_t)map;
    attr.key = (uint64_t)(uintptr_t)key;
    attr.value = (uint64_t)(uintptr_t)value;
    attr.flags = BPF_ANY;
    return bpf_call(BPF_MAP_UPDATE_ELEM, &attr) < 0 ? -errno : 0;
}

// A small assembler: instructions, labels, and jumps patched once every label is placed.
enum { MAX_INSNS = 96, MAX_FIXES = 16, MAX_LABELS = 8 };
typedef struct {
    struct bpf_insn code[MAX_INSNS];
    int count;
    int labels[MAX_LABELS];
    int fix_at[MAX_FIXES];
    int fix_label[MAX_FIXES];
    int fixes;
} program;

static void emit(program *p, uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm) {
    if (p->count >= MAX_INSNS) return;
    struct bpf_insn *insn = &p->code[p->count++];
    memset(insn, 0, sizeof(*insn));
    insn->code = code;
    insn->dst_reg = dst;
    insn->src_reg = src;
    insn->off = off;
    insn->imm = imm;
}

static void jump(program *p, uint8_t code, uint8_t dst, uint8_t src, int32_t imm, int label) {
    if (p->fixes < MAX_FIXES) {
        p->fix_at[p->fixes] = p->count;
        p->fix_label[p->fixes++] = label;
    }
    emit(p, code, dst, src, 0, imm);
}

static void place(program *p, int label) { p->labels[label] = p->count; }

static void load_map(program *p, uint8_t dst, int map) {
    emit(p, BPF_LD | BPF_DW | BPF_IMM, dst, BPF_PSEUDO_MAP_FD, 0, map);
    emit(p, 0, 0, 0, 0, 0);
}

/// r0 = lookup(map, fp + key_offset); clobbers r1-r5.
static void lookup(program *p, int map, int16_t key_offset) {
    load_map(p, BPF_REG_1, map);
    emit(p, BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_2, BPF_REG_10, 0, 0);
    emit(p, BPF_ALU64 | BPF_ADD | BPF_K, BPF_REG_2, 0, 0, key_offset);
    emit(p, BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_map_lookup_elem);
}

enum { PASS, DROP, NET, COUNT, ZERO };

/// Stack: fp-24 the time now; fp-16 the key (u64 value, u32 kind, u32 zero); fp-4 an array key.
/// Registers: r6 the packet, r7 the client key, r8 the prefix shift, r9 the pass-through mask.
static void build(program *p, const dnsfence_shed *shed, int ipv6) {
    memset(p, 0, sizeof(*p));
    emit(p, BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_6, BPF_REG_1, 0, 0);
    // The configuration: on, this family's shift, the mask.
    emit(p, BPF_ST | BPF_W | BPF_MEM, BPF_REG_10, 0, -4, 0);
    lookup(p, shed->config, -4);
    jump(p, BPF_JMP | BPF_JEQ | BPF_K, BPF_REG_0, 0, 0, PASS);
    emit(p, BPF_LDX | BPF_W | BPF_MEM, BPF_REG_1, BPF_REG_0, 0, 0);
    jump(p, BPF_JMP | BPF_JEQ | BPF_K, BPF_REG_1, 0, 0, PASS);
    emit(p, BPF_LDX | BPF_W | BPF_MEM, BPF_REG_8, BPF_REG_0, ipv6 ? 8 : 4, 0);
    emit(p, BPF_LDX | BPF_W | BPF_MEM, BPF_REG_9, BPF_REG_0, 12, 0);
    emit(p, BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_ktime_get_ns);
    emit(p, BPF_STX | BPF_DW | BPF_MEM, BPF_REG_10, BPF_REG_0, -24, 0);
    // The source address, in host order (LD_ABS converts): IPv4's, or IPv6's high 64 bits.
    if (ipv6) {
        emit(p, BPF_LD | BPF_W | BPF_ABS, 0, 0, 0, SKF_NET_OFF + 8);
        emit(p, BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_7, BPF_REG_0, 0, 0);
        emit(p, BPF_ALU64 | BPF_LSH | BPF_K, BPF_REG_7, 0, 0, 32);
        emit(p, BPF_LD | BPF_W | BPF_ABS, 0, 0, 0, SKF_NET_OFF + 12);
        emit(p, BPF_ALU64 | BPF_OR | BPF_X, BPF_REG_7, BPF_REG_0, 0, 0);
    } else {
        emit(p, BPF_LD | BPF_W | BPF_ABS, 0, 0, 0, SKF_NET_OFF + 12);
        emit(p, BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_7, BPF_REG_0, 0, 0);
    }
    // The address, then its prefix: dropped while either is blocked. A block is { until,
    // interval, expires }: before `until` a datagram is dropped; at or after it, one passes and
    // the next may pass one interval later (the rate limiter's own rate, so a client held in
    // the kernel gets what dnsfence would admit); after `expires` the block is stale.
    for (int prefix = 0; prefix < 2; prefix++) {
        if (prefix) {
            place(p, NET);
            emit(p, BPF_ALU64 | BPF_RSH | BPF_X, BPF_REG_7, BPF_REG_8, 0, 0);
        }
        emit(p, BPF_STX | BPF_DW | BPF_MEM, BPF_REG_10, BPF_REG_7, -16, 0);
        emit(p, BPF_ST | BPF_W | BPF_MEM, BPF_REG_10, 0, -8, (ipv6 ? 2 : 0) + prefix);
        emit(p, BPF_ST | BPF_W | BPF_MEM, BPF_REG_10, 0, -4, 0);
        lookup(p, shed->blocks, -16);
        int next = prefix ? PASS : NET;
        jump(p, BPF_JMP | BPF_JEQ | BPF_K, BPF_REG_0, 0, 0, next);
        emit(p, BPF_LDX | BPF_DW | BPF_MEM, BPF_REG_2, BPF_REG_10, -24, 0);
        emit(p, BPF_LDX | BPF_DW | BPF_MEM, BPF_REG_1, BPF_REG_0, 16, 0);
        jump(p, BPF_JMP | BPF_JGE | BPF_X, BPF_REG_2, BPF_REG_1, 0, next);
        emit(p, BPF_LDX | BPF_DW | BPF_MEM, BPF_REG_1, BPF_REG_0, 0, 0);
        jump(p, BPF_JMP | BPF_JLT | BPF_X, BPF_REG_2, BPF_REG_1, 0, DROP);
        emit(p, BPF_LDX | BPF_DW | BPF_MEM, BPF_REG_1, BPF_REG_0, 8, 0);
        emit(p, BPF_ALU64 | BPF_ADD | BPF_X, BPF_REG_1, BPF_REG_2, 0, 0);
        emit(p, BPF_STX | BPF_DW | BPF_MEM, BPF_REG_0, BPF_REG_1, 0, 0);
        if (!prefix) jump(p, BPF_JMP | BPF_JA, 0, 0, 0, NET);
    }
    place(p, PASS);
    emit(p, BPF_ALU | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, -1);
    emit(p, BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
    // Blocked: one in (mask + 1) passes anyway, for the rate limiter's slip; the rest counted.
    place(p, DROP);
    jump(p, BPF_JMP | BPF_JEQ | BPF_K, BPF_REG_9, 0, 0, COUNT);
    emit(p, BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_get_prandom_u32);
    emit(p, BPF_ALU64 | BPF_AND | BPF_X, BPF_REG_0, BPF_REG_9, 0, 0);
    jump(p, BPF_JMP | BPF_JEQ | BPF_K, BPF_REG_0, 0, 0, PASS);
    place(p, COUNT);
    emit(p, BPF_ST | BPF_W | BPF_MEM, BPF_REG_10, 0, -4, 0);
    lookup(p, shed->counter, -4);
    jump(p, BPF_JMP | BPF_JEQ | BPF_K, BPF_REG_0, 0, 0, ZERO);
    emit(p, BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_1, 0, 0, 1);
    emit(p, BPF_STX | BPF_DW | BPF_ATOMIC, BPF_REG_0, BPF_REG_1, 0, BPF_ADD);
    place(p, ZERO);
    emit(p, BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 0);
    emit(p, BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
    for (int i = 0; i < p->fixes; i++) {
        p->code[p->fix_at[i]].off = (int16_t)(p->labels[p->fix_label[i]] - p->fix_at[i] - 1);
    }
}

static int load(const dnsfence_shed *shed, int ipv6, char *error, uint32_t error_length) {
    program p;
    build(&p, shed, ipv6);
    char log[16384];
    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
    attr.insns = (uint64_t)(uintptr_t)p.code;
    attr.insn_cnt = (uint32_t)p.count;
    attr.license = (uint64_t)(uintptr_t)"Dual MIT/GPL";
    strncpy(attr.prog_name, ipv6 ? "dnsfence_shed6" : "dnsfence_shed4", sizeof(attr.prog_name) - 1);
    long fd = bpf_call(BPF_PROG_LOAD, &attr);
    if (fd >= 0) return (int)fd;
    int code = errno;
    // Again with the verifier's log, for the error.
    log[0] = 0;
    attr.log_buf = (uint64_t)(uintptr_t)log;
    attr.log_size = sizeof(log);
    attr.log_level = 1;
    if (bpf_call(BPF_PROG_LOAD, &attr) >= 0) {
        snprintf(error, error_length, "loading the filter: %s", strerror(code));
        return -code;
    }
    size_t length = strlen(log);
    while (length > 0 && log[length - 1] == '\n') log[--length] = 0;
    const char *last = strrchr(log, '\n');
    snprintf(error, error_length, "loading the filter: %s%s%s", strerror(code), length ? ": " : "",
             last ? last + 1 : log);
    return -code;
}

int dnsfence_shed_create(dnsfence_shed *shed, uint32_t block_entries, char *error, uint32_t error_length) {
    shed->config = shed->blocks = shed->counter = shed->program4 = shed->program6 = -1;
    int rc = map_create(BPF_MAP_TYPE_ARRAY, 4, 16, 1, "dnsfence_config");
    if (rc < 0) {
        snprintf(error, error_length, "creating a BPF map: %s", strerror(-rc));
        return rc;
    }
    shed->config = rc;
    rc = map_create(BPF_MAP_TYPE_LRU_HASH, 16, 24, block_entries, "dnsfence_blocks");
    if (rc >= 0) {
        shed->blocks = rc;
        rc = map_create(BPF_MAP_TYPE_ARRAY, 4, 8, 1, "dnsfence_shed");
    }
    if (rc < 0) {
        snprintf(error, error_length, "creating a BPF map: %s", strerror(-rc));
        dnsfence_shed_close(shed);
        return rc;
    }
    shed->counter = rc;
    rc = load(shed, 0, error, error_length);
    if (rc >= 0) {
        shed->program4 = rc;
        rc = load(shed, 1, error, error_length);
    }
    if (rc < 0) {
        dnsfence_shed_close(shed);
        return rc;
    }
    shed->program6 = rc;
    return 0;
}

void dnsfence_shed_close(dnsfence_shed *shed) {
    int *fds[] = {&shed->config, &shed->blocks, &shed->counter, &shed->program4, &shed->program6};
    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++) {
        if (*fds[i] >= 0) close(*fds[i]);
        *fds[i] = -1;
    }
}

int dnsfence_shed_configure(const dnsfence_shed *shed, uint32_t enabled, uint32_t ipv4_shift, uint32_t ipv6_shift,
                            uint32_t pass_mask) {
    uint32_t key = 0;
    uint32_t value[4] = {enabled, ipv4_shift, ipv6_shift, pass_mask};
    return map_update(shed->config, &key, value);
}

int dnsfence_shed_attach(const dnsfence_shed *shed, int fd, int ipv6) {
    int program = ipv6 ? shed->program6 : shed->program4;
    return setsockopt(fd, SOL_SOCKET, SO_ATTACH_BPF, &program, sizeof(program)) == 0 ? 0 : -errno;
}

int dnsfence_shed_block(const dnsfence_shed *shed, uint64_t key, uint32_t kind, uint64_t until_ns,
                        uint64_t interval_ns, uint64_t expires_ns) {
    struct {
        uint64_t value;
        uint32_t kind;
        uint32_t zero;
    } entry = {key, kind, 0};
    uint64_t block[3] = {until_ns, interval_ns, expires_ns};
    return map_update(shed->blocks, &entry, block);
}

uint64_t dnsfence_shed_dropped(const dnsfence_shed *shed) {
    uint32_t key = 0;
    uint64_t value = 0;
    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.map_fd = (uint32_t)shed->counter;
    attr.key = (uint64_t)(uintptr_t)&key;
    attr.value = (uint64_t)(uintptr_t)&value;
    return bpf_call(BPF_MAP_LOOKUP_ELEM, &attr) < 0 ? 0 : value;
}
