"""Listening sockets and accepting connections, for one server process or several.

    sock = listen_socket(host, port, "REST")                # port 0: a free port
    listener = Listener(sock, protocol_factory, balance)    # on the serving loop
    ...
    listener.close()

One server process accepts every connection itself. Worker processes (`serving.workers`)
share each listening socket, bound once by the supervisor, and balance connections between
them: `Balance` counts every worker's open connections in shared memory, and a worker only
accepts while no other worker has fewer (a worker that holds back looks again 1 ms later,
and accepts anyway after 50 ms, so a stuck neighbour cannot stall new connections).

Why not SO_REUSEPORT: the kernel hashes each connection to one of the sockets, so 8
connections on 2 workers were split 6/2 or 5/3 in 4 runs of 4; the busy worker queued
twice the requests of the other while the other sat idle (REST p99 at concurrency 8:
6.8-9.2 ms; see README "Serving latency").
"""
from __future__ import annotations

import asyncio
import logging
import os
import select
import socket
import time

log = logging.getLogger(__name__)

BACKLOG = 128
RETRY_SECONDS = 0.001
MAX_HOLD_SECONDS = 0.05
DEAD = 1 << 30   # the count of a worker that is not serving: never the least loaded


def listen_socket(host: str, port: int, what: str) -> socket.socket:
    """A listening TCP socket on (host, port), IPv4 or IPv6; an OSError naming `what` and
    the address if it cannot be had (a port in use, say)."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
        sock = socket.create_server((host, port), family=family, backlog=BACKLOG, reuse_port=False)
    except OSError as e:
        reason = os.strerror(e.errno) if e.errno else str(e)
        raise OSError(e.errno, f"could not bind {what} to {host}:{port}: {reason}") from None
    sock.setblocking(False)
    return sock


def server_sockets(host: str, grpc_port: int, rest_port: int) -> tuple[socket.socket, socket.socket]:
    """The gRPC and REST listening sockets of a server (or of a worker pool), both or none."""
    grpc_sock = listen_socket(host, grpc_port, "gRPC")
    try:
        return grpc_sock, listen_socket(host, rest_port, "REST")
    except OSError:
        grpc_sock.close()
        raise


class Balance:
    """Open connections per worker, in a shared array (multiprocessing RawArray of int64);
    each worker writes only its own slot."""

    def __init__(self, counts, index: int):
        self.counts = counts
        self.index = index

    def serving(self) -> None:
        self.counts[self.index] = 0

    def add(self, n: int) -> None:
        self.counts[self.index] += n

    def least_loaded(self) -> bool:
        mine = self.counts[self.index]
        return all(mine <= c for c in self.counts)


class Listener:
    """Accepts on `sock` from the running loop and hands each connection to a protocol
    from `factory`; with a Balance, only while this worker is the least loaded."""

    def __init__(self, sock: socket.socket, factory, balance: Balance | None = None):
        self.sock = sock
        self.factory = factory
        self.balance = balance
        self.loop = asyncio.get_running_loop()
        self.port = sock.getsockname()[1]
        self._held_since: float | None = None
        self._retry = None
        self._closed = False
        self.loop.add_reader(sock.fileno(), self._accept)

    def _accept(self) -> None:
        for _ in range(16):   # a burst of connections at most, then let requests run
            if self.balance is not None and not self.balance.least_loaded():
                now = time.monotonic()
                if self._held_since is None:
                    self._held_since = now
                if now - self._held_since < MAX_HOLD_SECONDS:
                    self._hold()
                    return
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                self._held_since = None   # nothing waits (another worker took it)
                return
            except OSError as e:   # out of file descriptors, say: try again shortly
                log.error("accept on port %d failed: %s", self.port, e)
                self._hold(0.1)
                return
            self._held_since = None
            conn.setblocking(False)
            if self.balance is not None:
                self.balance.add(1)
            self.loop.create_task(self._connect(conn))

    def _hold(self, seconds: float = RETRY_SECONDS) -> None:
        """Stop watching the socket for `seconds` (another worker should take what waits)."""
        self.loop.remove_reader(self.sock.fileno())
        self._retry = self.loop.call_later(seconds, self._watch)

    def _watch(self) -> None:
        self._retry = None
        if self._closed:
            return
        if not select.select([self.sock], [], [], 0)[0]:
            self._held_since = None   # what waited was taken: the next hold starts afresh
        self.loop.add_reader(self.sock.fileno(), self._accept)

    async def _connect(self, conn: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(self._protocol, conn)
        except Exception as e:  # noqa: BLE001 - the client may be gone already
            log.info("connection on port %d dropped before it started: %s", self.port, e)
            conn.close()
            if self.balance is not None:
                self.balance.add(-1)

    def _protocol(self):
        protocol = self.factory()
        if self.balance is not None:
            balance, lost = self.balance, protocol.connection_lost

            def connection_lost(exc):
                balance.add(-1)
                lost(exc)
            protocol.connection_lost = connection_lost
        return protocol

    def close(self) -> None:
        """Stops accepting (the socket itself belongs to whoever made it)."""
        if not self._closed:
            self._closed = True
            if self._retry is not None:
                self._retry.cancel()
            else:
                self.loop.remove_reader(self.sock.fileno())
