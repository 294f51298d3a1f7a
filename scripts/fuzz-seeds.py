#!/usr/bin/env python3
"""Writes the fuzz seed corpus into DIR: the golden packets of the wire tests (queries from dig,
kdig and drill, answers from nsd) and queries of every shape the policy and the renderers tell
apart: names (allowed, wildcard, local data, each kind of denial, unknown, mixed case), types,
EDNS (none, plain, DO, an option), header bits, a TSIG record, a second question, a response.
Usage: scripts/fuzz-seeds.py DIR"""
import os, shutil, struct, sys

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
fixtures = os.path.join(os.path.dirname(__file__), "..", "Tests", "DNSFenceWireTests", "Fixtures")
for name in sorted(os.listdir(fixtures)):
    shutil.copy(os.path.join(fixtures, name), os.path.join(out, name))


def wire(name):
    return b"".join(bytes([len(l)]) + l.encode() for l in name.split(".") if l) + b"\0"


def query(name, qtype, flags=0x0100, edns=None, extra=b"", arcount=0, qdcount=1):
    body = wire(name) + struct.pack(">HH", qtype, 1)
    if qdcount == 2:
        body += body
    if edns is not None:
        do, options = edns
        body += b"\0" + struct.pack(">HHBBHH", 41, 1232, 0, 0, 0x8000 if do else 0, len(options)) + options
        arcount += 1
    return struct.pack(">HHHHHH", 0x1234, flags, qdcount, 0, 0, arcount) + body + extra


names = ["ok.test", "OK.Test", "a.wild.test", "deep.b.wild.test", "wild.test", "proxy.test", "alias.test",
         "gone.test", "empty.test", "quiet.test", "nowhere.example"]
types = [1, 28, 16, 255, 252, 65, 5]
count = 0
for name in names:
    for qtype in types:
        for edns in [None, (False, b""), (True, b""), (False, struct.pack(">HH", 10, 8) + b"cookie!!")]:
            with open(os.path.join(out, f"q{count:04d}.bin"), "wb") as f:
                f.write(query(name, qtype, edns=edns))
            count += 1
tsig = wire("key.example") + struct.pack(">HHIH", 250, 255, 0, 0)
odd = [
    query("ok.test", 1, flags=0x0130),  # RD off, AD and CD on
    query("ok.test", 1, flags=0x8180),  # a response
    query("ok.test", 1, flags=0x2900),  # opcode UPDATE
    query("ok.test", 1, qdcount=2),
    query("ok.test", 1, extra=tsig, arcount=1),
    query("ok.test", 1, edns=(False, b""))[:-3],  # a cut OPT record
    b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01",  # a compression loop
]
for i, packet in enumerate(odd):
    with open(os.path.join(out, f"odd{i}.bin"), "wb") as f:
        f.write(packet)
print(f"{count + len(odd) + len(os.listdir(fixtures))} seeds in {out}")
