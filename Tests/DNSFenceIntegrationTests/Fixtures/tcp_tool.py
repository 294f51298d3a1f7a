#!/usr/bin/env python3
"""Tiny TCP helper for the sandbox end-to-end test.

  serve ADDR... PORT      echo server on every ADDR (threads), runs until killed
  connect HOST PORT SECS  exit 0 if a TCP connection is established within SECS, else 1
  hold HOST PORT SECS     connect, wait SECS, then send and expect an echo: exit 0 if it works
  http ADDR PORT          HTTP server answering "ok" to every GET (no reverse DNS lookups,
                          which http.server does at start and which would wait on a resolver)
"""
import socket, sys, threading, time

def serve(addrs, port):
    def loop(addr):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, port))
        s.listen(64)
        while True:
            c, _ = s.accept()
            threading.Thread(target=echo, args=(c,), daemon=True).start()
    def echo(c):
        with c:
            while True:
                data = c.recv(4096)
                if not data:
                    return
                c.sendall(data)
    for a in addrs:
        threading.Thread(target=loop, args=(a,), daemon=True).start()
    while True:
        time.sleep(3600)

def connect(host, port, secs):
    try:
        socket.create_connection((host, port), timeout=secs).close()
        return 0
    except OSError:
        return 1

def hold(host, port, secs):
    try:
        c = socket.create_connection((host, port), timeout=2)
        time.sleep(secs)
        c.settimeout(3)
        c.sendall(b"ping")
        return 0 if c.recv(4) == b"ping" else 1
    except OSError:
        return 1

def http(addr, port):
    import http.server, socketserver
    class Server(socketserver.ThreadingTCPServer):
        allow_reuse_address = True
        daemon_threads = True
        address_family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"ok\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def do_HEAD(self):
            self.send_response(200)
            self.send_header("Content-Length", "3")
            self.end_headers()
        def log_message(self, *args):
            pass
    Server((addr, port), Handler).serve_forever()

if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "serve":
        serve(sys.argv[2:-1], int(sys.argv[-1]))
    elif cmd == "connect":
        sys.exit(connect(sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
    elif cmd == "http":
        http(sys.argv[2], int(sys.argv[3]))
    elif cmd == "hold":
        sys.exit(hold(sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
