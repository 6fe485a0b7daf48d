"""Real servers on loopback for the gateway tests: uvicorn in a thread on a pre-bound port
(:class:`gateway.background.ServerThread`, as the demo uses), a TCP server that resets, and
an OTLP/HTTP trace receiver."""

from __future__ import annotations

import gzip
import http.server
import socket
import threading
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from lockgate.gateway.background import ServerThread

__all__ = ["OTLPReceiver", "ResetServer", "ServerThread"]


class OTLPReceiver:
    """Takes OTLP/HTTP trace exports on ``url`` (``…/v1/traces``) and keeps each body as
    sent (``raw``: content-encoding and bytes) and decoded (``requests``). Answers
    ``status`` (200 unless changed)."""

    def __init__(self) -> None:
        self.raw: list[tuple[str | None, bytes]] = []
        self.requests: list[ExportTraceServiceRequest] = []
        self.status = 200
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                encoding = self.headers.get("content-encoding")
                receiver.raw.append((encoding, body))
                if self.path == "/v1/traces" and receiver.status == 200:
                    data = gzip.decompress(body) if encoding == "gzip" else body
                    receiver.requests.append(ExportTraceServiceRequest.FromString(data))
                self.send_response(receiver.status)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.url = self.base_url + "/v1/traces"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class ResetServer:
    """A TCP server that resets the first ``resets`` connections once their request has
    arrived (SO_LINGER 0: an RST, not a FIN), then answers a chat completion."""

    ANSWER = (
        b'{"id":"chatcmpl-reset","object":"chat.completion","created":1,"model":"reset-model",'
        b'"choices":[{"index":0,"message":{"role":"assistant","content":"after the reset"},'
        b'"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":3,'
        b'"total_tokens":6}}'
    )

    def __init__(self, resets: int) -> None:
        self.resets = resets
        self.connections = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        import struct

        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                part = conn.recv(65536)
                if not part:
                    return
                data += part
            head, _, body = data.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            while len(body) < length:
                part = conn.recv(65536)
                if not part:
                    return
                body += part
            self.connections += 1
            if self.connections <= self.resets:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            conn.sendall(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n"
                b"content-length: " + str(len(self.ANSWER)).encode() + b"\r\n\r\n" + self.ANSWER
            )

    def stop(self) -> None:
        self.sock.close()
