"""A tiny HTTP backend and client for proxy tests, run inside network namespaces.

    python -m tests.support.echo NAME PORT          serve: every GET answers "NAME CLIENT-IP"; so does every
                                                    UDP datagram to the same port number
    python -m tests.support.echo --udp HOST:PORT N SRCPORT
                                                    N datagrams from one source port (one conntrack flow),
                                                    each waiting for its answer; prints JSON as --get
    python -m tests.support.echo --wait HOST:PORT   wait until HOST:PORT accepts connections
    python -m tests.support.echo --get HOST:PORT N [TIMEOUT]
                                                    N requests, one connection each; prints JSON:
                                                    {"answers": ["pod0 10.250.2.2", ...], "errors": ["refused", ...]}

Each request opens its own TCP connection, so that a Service's random
balancing (decided per connection) is sampled N times.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def serve(name: str, port: int) -> None:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = f"{name} {self.client_address[0]}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    def udp() -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("0.0.0.0", port))
        while True:
            _, addr = sock.recvfrom(2048)
            sock.sendto(f"{name} {addr[0]}".encode(), addr)

    threading.Thread(target=udp, name="udp-echo", daemon=True).start()
    ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()


def get(host: str, port: int, timeout: float = 5.0) -> str:
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(f"GET / HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    return data.split(b"\r\n\r\n", 1)[1].decode()


def main(argv: list[str]) -> None:
    if argv[0] == "--wait":
        host, port = argv[1].rsplit(":", 1)
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection((host, int(port)), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    if argv[0] == "--get":
        host, port = argv[1].rsplit(":", 1)
        answers: list[str] = []
        errors: list[str] = []
        timeout = float(argv[3]) if len(argv) > 3 else 5.0
        for _ in range(int(argv[2])):
            try:
                answers.append(get(host, int(port), timeout))
            except ConnectionRefusedError:
                errors.append("refused")
            except TimeoutError:
                errors.append("timeout")
            except OSError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
        print(json.dumps({"answers": answers, "errors": errors}))
        return
    if argv[0] == "--udp":
        host, port = argv[1].rsplit(":", 1)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("0.0.0.0", int(argv[3])))
        sock.settimeout(2.0)
        answers, errors = [], []
        for _ in range(int(argv[2])):
            sock.sendto(b"?", (host, int(port)))
            try:
                answers.append(sock.recvfrom(2048)[0].decode())
            except TimeoutError:
                errors.append("timeout")
            except OSError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
        print(json.dumps({"answers": answers, "errors": errors}))
        return
    serve(argv[0], int(argv[1]))


if __name__ == "__main__":
    main(sys.argv[1:])
