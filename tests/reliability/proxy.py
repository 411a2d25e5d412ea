"""A TCP proxy on loopback between agents and a coordinator, to break the link the way networks do:
delay every chunk, cut every open connection at once, or go silent (a blackhole: bytes are held,
not dropped, so the HTTP/2 framing survives and only deadlines notice) for a while."""

from __future__ import annotations

import socket
import struct
import threading
import time


class LinkProxy:
    def __init__(self, target_port: int, chunk_bytes: int = 1024) -> None:
        """`chunk_bytes` is the most forwarded per read: small, so one message spans several chunks
        and a cut can land inside it."""
        self.target_port, self.chunk_bytes = target_port, chunk_bytes
        self.delay_up_s = self.delay_down_s = 0.0  # per chunk: agent -> coordinator, and back
        self.bytes_up = 0
        self.cuts = 0
        self._silent_until = 0.0
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        """Reset every open connection now, in both directions (what a dropped Wi-Fi link does)."""
        with self._lock:
            connections, self._connections = self._connections, []
            self.cuts += 1
        for connection in connections:
            try:
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST, not FIN
                connection.shutdown(socket.SHUT_RDWR)  # wakes the pump blocked in recv; close alone does not
            except OSError:
                pass  # its pump closed it already
            connection.close()

    def blackhole(self, seconds: float) -> None:
        """Forward nothing, on open or new connections, for `seconds`; then deliver what was held."""
        self._silent_until = time.monotonic() + seconds

    def close(self) -> None:
        self._listener.close()
        self.cut()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self._listener.accept()
            except OSError:  # closed
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                downstream.close()
                continue
            with self._lock:
                self._connections += [downstream, upstream]
            threading.Thread(target=self._pump, args=(downstream, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, downstream, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, up: bool) -> None:
        try:
            while chunk := source.recv(self.chunk_bytes):
                time.sleep(self.delay_up_s if up else self.delay_down_s)
                while time.monotonic() < self._silent_until:
                    time.sleep(0.02)
                sink.sendall(chunk)
                if up:
                    self.bytes_up += len(chunk)
        except OSError:
            pass  # cut, or the other side went away
        finally:
            for end in (source, sink):
                end.close()
