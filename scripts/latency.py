#!/usr/bin/env python3
"""Client-side latency at a fixed query rate: sends the names of a dnsperf data file round-robin
over UDP at RATE queries/s for SECONDS, matches replies by ID, and prints latency percentiles
(the p99 target of docs/performance.md). Usage: latency.py SERVER PORT FILE RATE SECONDS"""
import os, select, socket, struct, sys, time

server, port, path, rate, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
TYPES = {"A": 1, "AAAA": 28, "TXT": 16, "MX": 15}


def query(qid, name, qtype):
    wire = b"".join(bytes([len(label)]) + label.encode() for label in name.rstrip(".").split(".")) + b"\0"
    opt = b"\0" + struct.pack("!HHIH", 41, 1232, 0, 0)
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 1) + wire + struct.pack("!HH", TYPES[qtype], 1) + opt


names = [line.split() for line in open(path) if line.strip()]
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
sock.connect((server, port))
sock.setblocking(False)
sent_at, latencies = {}, []
interval = 1.0 / rate
start = time.perf_counter()
next_send, count, qid = start, int(rate * seconds), 0
poller = select.poll()
poller.register(sock, select.POLLIN)


def drain():
    while True:
        try:
            data = sock.recv(65535)
        except BlockingIOError:
            return
        (rid,) = struct.unpack("!H", data[:2])
        t0 = sent_at.pop(rid, None)
        if t0 is not None:
            latencies.append(time.perf_counter() - t0)


for i in range(count):
    while True:
        now = time.perf_counter()
        if now >= next_send:
            break
        if poller.poll(max(0, (next_send - now) * 1000)):
            drain()
    qid = (qid + 1) & 0xFFFF
    name, qtype = names[i % len(names)]
    sent_at[qid] = time.perf_counter()
    sock.send(query(qid, name, qtype))
    next_send += interval
    drain()
deadline = time.perf_counter() + 2
while sent_at and time.perf_counter() < deadline:
    if poller.poll(100):
        drain()
elapsed = time.perf_counter() - start
latencies.sort()


def pct(p):
    return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1e3 if latencies else float("nan")


print(
    f"{len(latencies)} answers in {elapsed:.1f} s ({len(latencies) / elapsed:.0f}/s), {len(sent_at)} unanswered; "
    f"latency ms p50 {pct(50):.3f} p90 {pct(90):.3f} p99 {pct(99):.3f} p99.9 {pct(99.9):.3f} max {latencies[-1] * 1e3 if latencies else 0:.3f}"
)
