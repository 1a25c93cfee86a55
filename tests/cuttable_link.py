"""A TCP link to a server that a test can cut and restore: one process's way to the bus (a
network partition of that process alone), while every other process keeps its own.

Threads, not the test's event loop: the link must keep relaying while an async test awaits,
and e2e tests have no loop at all. Cutting closes every connection through it and refuses new
ones (the client sees its connection reset, as on a lost network); restoring listens again on
the same port, so the client's reconnection attempts find it. Stalling is a silent partition:
the connections stay open and every byte is dropped, which only the client's pings reveal."""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType

from aitbc_infra.nats_server import free_port


class CuttableLink:
    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.target_port = target_port
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.stalled = False

    def url(self, scheme: str = "nats") -> str:
        return f"{scheme}://{self.host}:{self.port}"

    def __enter__(self) -> CuttableLink:
        return self.restore()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cut()

    def restore(self) -> CuttableLink:
        """Listen again: new connections reach the server."""
        self.stalled = False
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def stall(self) -> None:
        """Every byte either way is dropped from now on, and nothing is closed."""
        self.stalled = True

    def cut(self) -> None:
        """Every connection through the link is closed, and new ones are refused."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            held, self._sockets = self._sockets, set()
        for sock in held:
            _close(sock)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # cut
                return
            try:
                server = socket.create_connection((self.host, self.target_port), timeout=5)
            except OSError:
                _close(client)
                continue
            server.settimeout(None)
            with self._lock:
                if self._listener is not listener:  # cut meanwhile
                    _close(client)
                    _close(server)
                    return
                self._sockets |= {client, server}
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if not self.stalled:
                    sink.sendall(data)
        except OSError:
            pass
        finally:
            _close(source)
            _close(sink)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
