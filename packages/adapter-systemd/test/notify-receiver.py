#!/usr/bin/env python3
"""A stand-in for systemd's notify socket: binds one AF_UNIX SOCK_DGRAM socket (a path, or an
@abstract name) and prints each datagram it receives as one JSON line on stdout:
{"ms": CLOCK_MONOTONIC in ms, "pid": sender pid (SO_PASSCRED, as systemd checks it), "data": text}.
Commands on stdin: "unbind" (close the socket, unlink a path: the socket vanishes), "rebind".
Exits when stdin closes."""
import json, os, select, socket, struct, sys, time

address = sys.argv[1]
bind_to = "\0" + address[1:] if address.startswith("@") else address
SCM_CREDENTIALS = 2
sock = None

def bind():
    global sock
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    s.bind(bind_to)
    sock = s

def unbind():
    global sock
    if sock is not None:
        sock.close()
        sock = None
    if not address.startswith("@"):
        try:
            os.unlink(address)
        except FileNotFoundError:
            pass

bind()
print(json.dumps({"bound": address}), flush=True)
while True:
    watched = [sys.stdin] + ([sock] if sock is not None else [])
    ready, _, _ = select.select(watched, [], [])
    if sock is not None and sock in ready:
        data, ancdata, _, _ = sock.recvmsg(65536, socket.CMSG_SPACE(12))
        pid = None
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == SCM_CREDENTIALS:
                pid = struct.unpack("iII", payload[:12])[0]
        print(json.dumps({"ms": time.monotonic_ns() / 1e6, "pid": pid, "data": data.decode("utf-8", "replace")}), flush=True)
    if sys.stdin in ready:
        line = sys.stdin.readline()
        if line == "":
            break
        command = line.strip()
        if command == "unbind":
            unbind()
            print(json.dumps({"unbound": address}), flush=True)
        elif command == "rebind":
            bind()
            print(json.dumps({"bound": address}), flush=True)
unbind()
