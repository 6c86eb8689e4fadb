#!/usr/bin/env python3
"""What an idle event stream costs roomcast-smol in memory, over plain HTTP and over TLS.

    bench/tls_idle_memory.py plain|tls N path/to/roomcast-smol

Starts the server on a free loopback port (with a throwaway self-signed certificate for tls,
made with openssl), opens N event streams on one room one after another, and prints the
server's RSS growth per stream. roomcast-load does not speak TLS; this is the one measurement
of it. Every socket times out after 20 s; the server is killed by its pid at the end.
"""
import json, socket, ssl, subprocess, sys, tempfile, time
mode, N, binary = sys.argv[1], int(sys.argv[2]), sys.argv[3]
socket.setdefaulttimeout(20)
d = tempfile.mkdtemp()
if mode == "tls":
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", f"{d}/key.pem", "-out", f"{d}/cert.pem", "-days", "1",
                    "-subj", "/CN=localhost"], check=True, capture_output=True)
args = [binary, "--in-memory", "--listen", "127.0.0.1:0", "--heartbeat", "1h", "--rate-burst=0"]
if mode == "tls":
    args += ["--tls-cert", f"{d}/cert.pem", "--tls-key", f"{d}/key.pem"]
log = open(f"{d}/server-{mode}.log", "w")
p = subprocess.Popen(args, stderr=log, text=True)
port = None
deadline = time.time() + 20
while port is None:
    assert time.time() < deadline, "the server did not say where it listens"
    time.sleep(0.1)
    for line in open(f"{d}/server-{mode}.log"):
        if "listening on" in line:
            port = int(line.rsplit(":", 1)[1])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
def conn():
    s = socket.create_connection(("127.0.0.1", port))
    return ctx.wrap_socket(s, server_hostname="localhost") if mode == "tls" else s
def call(method, path, body, tok=None):
    s = conn(); b = json.dumps(body).encode()
    h = f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {len(b)}\r\nConnection: close\r\n"
    if tok: h += f"Authorization: Bearer {tok}\r\n"
    s.sendall(h.encode() + b"\r\n" + b); data = b""
    while True:
        c = s.recv(65536)
        if not c: break
        data += c
    s.close(); return data.split(b"\r\n\r\n", 1)[1]
tok = json.loads(call("POST", "/api/v1/auth/guest", {"nickname": "m"}))["token"]
call("POST", "/api/v1/rooms", {"room": "m"}, tok)
def rss(): return int([l for l in open(f"/proc/{p.pid}/status") if l.startswith("VmRSS")][0].split()[1])
time.sleep(0.5); before = rss(); held = []
for i in range(N):
    s = conn()
    s.sendall(f"GET /api/v1/rooms/m/events HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\nAuthorization: Bearer {tok}\r\n\r\n".encode())
    s.recv(4096); held.append(s)
time.sleep(2); after = rss()
print(f"{mode}: {N} idle streams, RSS {before} -> {after} KiB, {(after-before)*1024/N/1000:.1f} KB/connection")
p.kill()
