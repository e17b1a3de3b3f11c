"""A TCP proxy on loopback that adds a network round trip: each chunk is forwarded half the
round trip after it was read, in each direction.

    with DelayProxy(("127.0.0.1", 27017), rtt_ms=1.0) as proxy:
        MongoClient(f"mongodb://127.0.0.1:{proxy.port}/?directConnection=true")

Chunks are stamped when read and sent when due by a second thread per direction, so the delay
adds latency without throttling throughput. Bounded: at most `max_connections` connections at a
time (more are refused), and it stops itself after `lifetime_s` or on exit, closing every socket.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType

Chunk = tuple[float, bytes] | None  # (when it is due, the bytes); None: the source closed


class DelayProxy:
    def __init__(self, target: tuple[str, int], *, rtt_ms: float, max_connections: int = 256,
                 lifetime_s: float = 3600.0) -> None:
        self.target = target
        self.half_rtt = rtt_ms / 2000
        self._max = max_connections
        self._deadline = time.monotonic() + lifetime_s
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._open: dict[int, tuple[socket.socket, socket.socket]] = {}
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept, name="delay-proxy", daemon=True)

    def __enter__(self) -> DelayProxy:
        self._acceptor.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def stop(self) -> None:
        self._stopped.set()
        if self._acceptor.is_alive() and self._acceptor is not threading.current_thread():
            self._acceptor.join(timeout=2)
        with self._lock:
            pairs, self._open = list(self._open.values()), {}
        for pair in pairs:
            for sock in pair:
                _close(sock)
        self._listener.close()

    def _accept(self) -> None:
        serial = 0
        while not self._stopped.is_set():
            if time.monotonic() > self._deadline:
                threading.Thread(target=self.stop, daemon=True).start()  # stops itself
                return
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                full = len(self._open) >= self._max
            if full:
                _close(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _close(client)
                continue
            serial += 1
            for sock in (client, upstream):
                sock.settimeout(None)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._open[serial] = (client, upstream)
            pending = [2]  # directions still open; the last one to end closes both sockets

            def done(key: int = serial, pending: list[int] = pending) -> None:
                with self._lock:
                    pending[0] -= 1
                    pair = self._open.pop(key, None) if pending[0] == 0 else None
                for sock in pair or ():
                    _close(sock)

            self._pipe(client, upstream, done)
            self._pipe(upstream, client, done)

    def _pipe(self, src: socket.socket, dst: socket.socket, done: Callable[[], None]) -> None:
        due: queue.SimpleQueue[Chunk] = queue.SimpleQueue()
        threading.Thread(target=self._read, args=(src, due), daemon=True).start()
        threading.Thread(target=self._write, args=(dst, due, done), daemon=True).start()

    def _read(self, src: socket.socket, due: queue.SimpleQueue[Chunk]) -> None:
        try:
            while chunk := src.recv(1 << 20):
                due.put((time.perf_counter() + self.half_rtt, chunk))
        except OSError:
            pass
        finally:
            due.put(None)

    def _write(self, dst: socket.socket, due: queue.SimpleQueue[Chunk],
               done: Callable[[], None]) -> None:
        try:
            while (item := due.get()) is not None:
                when, chunk = item
                if (wait := when - time.perf_counter()) > 0:
                    time.sleep(wait)
                dst.sendall(chunk)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            done()


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
