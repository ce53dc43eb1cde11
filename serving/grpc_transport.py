"""gRPC's wire protocol for unary calls over HTTP/2 (RFC 9113), on the server's asyncio loop.

    server = await start_grpc_transport(methods, listen_socket(host, port, "gRPC"), max_message_bytes)
    ...
    await server.stop(grace=2)

Why not grpc.aio: on an echo method (no model, h2load as the client, 8 connections), a
grpc.aio server spent 0.46 ms of CPU per unary call, most of it in its completion-queue
poller thread and the hand-offs between that thread and the loop; that was more than the
top-10 model call itself. This transport is the part of HTTP/2 and of gRPC's protocol that
unary calls need, with no thread of its own: `benchmarks/serving.py` gives the figures.

HTTP/2: connection preface, SETTINGS (acknowledged both ways), PING, WINDOW_UPDATE and flow
control in both directions (a big response waits for the client's window), HEADERS with
CONTINUATION, padding and priority fields, RST_STREAM (the answer to a cancelled call is
dropped), GOAWAY both ways (stop drains the calls in flight first), HPACK via `hpack`
(responses use literal fields only, so the encoder keeps no table). Protocol errors end the
connection with GOAWAY and the RFC's error code; a stream over the concurrency limit is
refused with REFUSED_STREAM.

gRPC: POST with content-type application/grpc*, one length-prefixed message per call,
`grpc-timeout` as the call's deadline, status and message in trailers (percent-encoded
message), trailers-only answers for errors. Unknown methods get UNIMPLEMENTED; a compressed
call (grpc-encoding other than identity) UNIMPLEMENTED; a message over the size limit
RESOURCE_EXHAUSTED; one that does not parse INTERNAL, as gRPC's own servers answer them.
Not supported: TLS, streaming calls, compression.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
import time
from typing import Awaitable, Callable

import grpc
import hpack

from movierec.serving.errors import ServingError
from movierec.serving.listener import Balance, Listener
from movierec.serving.eager import run_request

log = logging.getLogger(__name__)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# frame types
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
# flags
END_STREAM = ACK = 0x1
END_HEADERS, PADDED, PRIORITY_FLAG = 0x4, 0x8, 0x20
# error codes
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0, 1, 2, 3
STREAM_CLOSED, FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR = 5, 6, 7, 8, 9
# settings
S_HEADER_TABLE_SIZE, S_ENABLE_PUSH, S_MAX_CONCURRENT_STREAMS = 1, 2, 3
S_INITIAL_WINDOW_SIZE, S_MAX_FRAME_SIZE, S_MAX_HEADER_LIST_SIZE = 4, 5, 6

MAX_WINDOW = (1 << 31) - 1
DEFAULT_WINDOW = 65535
MAX_FRAME_SIZE = 16384          # what we accept (the RFC's default; we do not raise it)
MAX_HEADER_BLOCK = 64 << 10     # request headers, CONTINUATIONs included
STREAM_WINDOW = 1 << 20         # our initial window per stream
CONNECTION_WINDOW = 1 << 24     # our window for the whole connection
MAX_STREAMS = 100               # concurrent calls per connection

_TIMEOUT_UNITS = {b"H": 3600.0, b"M": 60.0, b"S": 1.0, b"m": 1e-3, b"u": 1e-6, b"n": 1e-9}


@dataclasses.dataclass(frozen=True)
class UnaryMethod:
    """A unary RPC: `parse(bytes) -> request message`, `handler(request, deadline) ->
    response message or its serialized bytes` (deadline: `time.monotonic()` value, or
    None), raising ServingError for a call that fails."""

    parse: Callable[[bytes], object]
    handler: Callable[[object, float | None], Awaitable[object]]


class _ConnectionError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


# ---- HPACK encoding: literal header fields without indexing (RFC 7541 6.2.2) ------------
def _hpack_int(value: int, prefix_bits: int, first: int) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = bytearray([first | limit])
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _hpack_string(s: bytes) -> bytes:
    return _hpack_int(len(s), 7, 0) + s


def _literal(name: bytes, value: bytes) -> bytes:
    return b"\x00" + _hpack_string(name) + _hpack_string(value)


def _literal_indexed_name(index: int, value: bytes) -> bytes:
    return _hpack_int(index, 4, 0) + _hpack_string(value)


_STATUS_200 = b"\x88"                                              # static table entry 8
_GRPC_CONTENT_TYPE = _literal_indexed_name(31, b"application/grpc")  # 31: content-type
_RESPONSE_HEADERS = _STATUS_200 + _GRPC_CONTENT_TYPE
_OK_TRAILERS = _literal(b"grpc-status", b"0")


def _percent_encode(message: str) -> bytes:
    out = bytearray()
    for b in message.encode("utf-8"):
        if 0x20 <= b <= 0x7E and b != 0x25:
            out.append(b)
        else:
            out += b"%%%02X" % b
    return bytes(out)


def _frame(ftype: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3, "big") + bytes((ftype, flags)) + stream_id.to_bytes(4, "big") + payload


def parse_timeout(value: bytes) -> float:
    """grpc-timeout ("100m", "5S", ...: 1-8 digits and a unit) -> seconds."""
    digits, unit = value[:-1], value[-1:]
    if not digits.isdigit() or len(digits) > 8 or unit not in _TIMEOUT_UNITS:
        raise ValueError(f"malformed grpc-timeout {value[:20]!r}")
    return int(digits) * _TIMEOUT_UNITS[unit]


class _Stream:
    __slots__ = ("id", "headers", "body", "recv_window", "send_window", "ended", "closed", "out", "trailers")

    def __init__(self, stream_id: int, send_window: int):
        self.id = stream_id
        self.headers: list = []
        self.body = bytearray()
        self.recv_window = STREAM_WINDOW
        self.send_window = send_window
        self.ended = False       # the client has sent all of its request
        self.closed = False      # answered in full, or reset
        self.out = b""           # response DATA not yet sent (waiting for window)
        self.trailers = b""      # the trailers HEADERS frame(s) to send after `out`


class GrpcConnection(asyncio.Protocol):
    """One client connection: frames in, calls dispatched to `UnaryMethod`s, answers out."""

    def __init__(self, server: "GrpcServer"):
        self.server = server
        self.transport = None
        self.buffer = bytearray()
        self.preface_seen = False
        self.decoder = hpack.Decoder()
        self.decoder.max_header_list_size = MAX_HEADER_BLOCK
        self.header_cache: dict[bytes, list] = {}
        self.streams: dict[int, _Stream] = {}
        self.last_stream_id = 0
        self.continuation: tuple[int, int, bytearray] | None = None
        self.recv_window = CONNECTION_WINDOW
        self.send_window = DEFAULT_WINDOW
        self.peer_initial_window = DEFAULT_WINDOW
        self.peer_max_frame = MAX_FRAME_SIZE
        self.table_size_update = b""   # the peer changed its table size: signal ours is 0
        self.out = bytearray()          # frames gathered while handling one read
        self.goaway_sent = False
        self.peer_goaway = False
        self._close_after_flush = False
        self.closing = False

    # -- asyncio.Protocol -----------------------------------------------------------------
    def connection_made(self, transport):
        self.transport = transport
        self.server.connections.add(self)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        settings = b"".join(k.to_bytes(2, "big") + v.to_bytes(4, "big") for k, v in (
            (S_MAX_CONCURRENT_STREAMS, MAX_STREAMS), (S_INITIAL_WINDOW_SIZE, STREAM_WINDOW),
            (S_MAX_HEADER_LIST_SIZE, MAX_HEADER_BLOCK)))
        transport.write(_frame(SETTINGS, 0, 0, settings)
                        + _frame(WINDOW_UPDATE, 0, 0, (CONNECTION_WINDOW - DEFAULT_WINDOW).to_bytes(4, "big")))

    def connection_lost(self, exc):
        self.closing = True
        self.server.connections.discard(self)
        for stream in self.streams.values():
            stream.closed = True
        self.streams.clear()
        self.server.connection_idle()

    def pause_writing(self):
        self.transport.pause_reading()

    def resume_writing(self):
        if not self.closing:
            self.transport.resume_reading()

    def data_received(self, data: bytes):
        if self.closing:
            return
        self.buffer += data
        try:
            self._read_frames()
        except _ConnectionError as e:
            self._fail(e.code, str(e))
        self._flush()

    # -- output -----------------------------------------------------------------------------
    def _flush(self) -> None:
        if self.out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(bytes(self.out))
        self.out.clear()
        if self._close_after_flush:
            self.close()

    def _fail(self, code: int, message: str) -> None:
        """Connection error: GOAWAY naming the problem, then close."""
        log.info("gRPC connection error %d: %s", code, message)
        self.out += _frame(GOAWAY, 0, 0, self.last_stream_id.to_bytes(4, "big") + code.to_bytes(4, "big")
                           + message.encode("utf-8", "replace")[:200])
        self._flush()
        self.closing = True
        self.transport.close()

    def _reset(self, stream_id: int, code: int) -> None:
        self.out += _frame(RST_STREAM, 0, stream_id, code.to_bytes(4, "big"))
        self._forget(stream_id)

    def _forget(self, stream_id: int) -> None:
        """A stream is over (answered, or reset by either side): its answer, if still to
        come, is dropped; with no stream left, a stop or a leaving client may go on."""
        stream = self.streams.pop(stream_id, None)
        if stream is not None:
            stream.closed = True
            if not self.streams:
                self._close_after_flush = self.peer_goaway
                self.server.connection_idle()

    def _header_frames(self, stream_id: int, block: bytes, end_stream: bool) -> bytes:
        block = self.table_size_update + block
        self.table_size_update = b""
        flags = END_STREAM if end_stream else 0
        size = self.peer_max_frame
        if len(block) <= size:
            return _frame(HEADERS, flags | END_HEADERS, stream_id, block)
        chunks = [block[i:i + size] for i in range(0, len(block), size)]
        frames = [_frame(HEADERS, flags, stream_id, chunks[0])]
        frames += [_frame(CONTINUATION, END_HEADERS if i == len(chunks) - 1 else 0, stream_id, c)
                   for i, c in enumerate(chunks[1:], 1)]
        return b"".join(frames)

    def _trailers(self, stream: _Stream, code: grpc.StatusCode, message: str, trailers_only: bool) -> bytes:
        block = _literal(b"grpc-status", str(code.value[0]).encode())
        if message:
            block += _literal(b"grpc-message", _percent_encode(message))
        if trailers_only:
            block = _RESPONSE_HEADERS + block
        return self._header_frames(stream.id, block, end_stream=True)

    def _answer(self, stream: _Stream, payload: bytes | None, code: grpc.StatusCode = grpc.StatusCode.OK,
                message: str = "") -> None:
        """Queues the response: headers, one length-prefixed message and OK trailers, or
        (payload None) a trailers-only error."""
        if stream.closed or self.closing:
            return
        if payload is None:
            self.out += self._trailers(stream, code, message, trailers_only=True)
            self._finish(stream)
            return
        self.out += self._header_frames(stream.id, _RESPONSE_HEADERS, end_stream=False)
        stream.out = b"\x00" + len(payload).to_bytes(4, "big") + payload
        stream.trailers = self._header_frames(stream.id, _OK_TRAILERS, end_stream=True)
        self._send_data(stream)

    def _send_data(self, stream: _Stream) -> None:
        """As much of the stream's pending DATA as the windows allow, then its trailers."""
        while stream.out:
            n = min(len(stream.out), self.send_window, stream.send_window, self.peer_max_frame)
            if n <= 0:
                return   # waits for WINDOW_UPDATE
            self.out += _frame(DATA, 0, stream.id, stream.out[:n])
            stream.out = stream.out[n:]
            self.send_window -= n
            stream.send_window -= n
        self.out += stream.trailers
        self._finish(stream)

    def _finish(self, stream: _Stream) -> None:
        if not stream.ended:
            # answered before the client finished sending (an error): stop its upload
            self.out += _frame(RST_STREAM, 0, stream.id, NO_ERROR.to_bytes(4, "big"))
        self._forget(stream.id)

    # -- input ------------------------------------------------------------------------------
    def _read_frames(self) -> None:
        buf = self.buffer
        pos = 0
        if not self.preface_seen:
            if len(buf) < len(PREFACE):
                if not PREFACE.startswith(bytes(buf)):
                    raise _ConnectionError(PROTOCOL_ERROR, "not an HTTP/2 connection preface (gRPC needs HTTP/2)")
                return
            if buf[:len(PREFACE)] != PREFACE:
                raise _ConnectionError(PROTOCOL_ERROR, "not an HTTP/2 connection preface (gRPC needs HTTP/2)")
            self.preface_seen = True
            pos = len(PREFACE)
        try:
            while len(buf) - pos >= 9 and not self.closing:
                length = int.from_bytes(buf[pos:pos + 3], "big")
                if length > MAX_FRAME_SIZE:
                    raise _ConnectionError(FRAME_SIZE_ERROR, f"frame of {length} bytes, more than {MAX_FRAME_SIZE}")
                end = pos + 9 + length
                if len(buf) < end:
                    break
                ftype, flags = buf[pos + 3], buf[pos + 4]
                stream_id = int.from_bytes(buf[pos + 5:pos + 9], "big") & 0x7FFFFFFF
                payload = bytes(buf[pos + 9:end])
                pos = end
                self._on_frame(ftype, flags, stream_id, payload)
        finally:
            del buf[:pos]

    def _on_frame(self, ftype: int, flags: int, stream_id: int, payload: bytes) -> None:
        if self.continuation is not None and (ftype != CONTINUATION or stream_id != self.continuation[0]):
            raise _ConnectionError(PROTOCOL_ERROR, "expected CONTINUATION of the header block")
        if ftype == DATA:
            self._on_data(flags, stream_id, payload)
        elif ftype == HEADERS:
            self._on_headers(flags, stream_id, payload)
        elif ftype == CONTINUATION:
            self._on_continuation(flags, stream_id, payload)
        elif ftype == SETTINGS:
            self._on_settings(flags, stream_id, payload)
        elif ftype == WINDOW_UPDATE:
            self._on_window_update(stream_id, payload)
        elif ftype == PING:
            if stream_id != 0:
                raise _ConnectionError(PROTOCOL_ERROR, "PING on a stream")
            if len(payload) != 8:
                raise _ConnectionError(FRAME_SIZE_ERROR, "PING payload is not 8 bytes")
            if not flags & ACK:
                self.out += _frame(PING, ACK, 0, payload)
        elif ftype == RST_STREAM:
            if stream_id == 0:
                raise _ConnectionError(PROTOCOL_ERROR, "RST_STREAM on stream 0")
            if len(payload) != 4:
                raise _ConnectionError(FRAME_SIZE_ERROR, "RST_STREAM payload is not 4 bytes")
            self._forget(stream_id)   # the call was cancelled: its answer will be dropped
        elif ftype == GOAWAY:
            self.peer_goaway = True   # the client opens no more calls: close once these are answered
            if not self.streams:
                self._close_after_flush = True
        elif ftype == PRIORITY:
            if len(payload) != 5:
                self._reset(stream_id, FRAME_SIZE_ERROR)
        elif ftype == PUSH_PROMISE:
            raise _ConnectionError(PROTOCOL_ERROR, "PUSH_PROMISE from a client")
        # other frame types are ignored (RFC 9113 5.5)

    def _on_settings(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id != 0:
            raise _ConnectionError(PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & ACK:
            if payload:
                raise _ConnectionError(FRAME_SIZE_ERROR, "SETTINGS ACK with a payload")
            return
        if len(payload) % 6:
            raise _ConnectionError(FRAME_SIZE_ERROR, "SETTINGS payload is not a multiple of 6 bytes")
        for i in range(0, len(payload), 6):
            key, value = int.from_bytes(payload[i:i + 2], "big"), int.from_bytes(payload[i + 2:i + 6], "big")
            if key == S_HEADER_TABLE_SIZE:
                self.table_size_update = b"\x20"   # our encoder uses no table: size 0 fits any limit
            elif key == S_INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise _ConnectionError(FLOW_CONTROL_ERROR, f"SETTINGS_INITIAL_WINDOW_SIZE {value} too large")
                delta, self.peer_initial_window = value - self.peer_initial_window, value
                for stream in self.streams.values():
                    stream.send_window += delta
            elif key == S_MAX_FRAME_SIZE:
                if not MAX_FRAME_SIZE <= value <= (1 << 24) - 1:
                    raise _ConnectionError(PROTOCOL_ERROR, f"SETTINGS_MAX_FRAME_SIZE {value} out of range")
                self.peer_max_frame = value
            elif key == S_ENABLE_PUSH and value > 1:
                raise _ConnectionError(PROTOCOL_ERROR, f"SETTINGS_ENABLE_PUSH {value}")
        self.out += _frame(SETTINGS, ACK, 0)
        self._send_waiting()

    def _on_window_update(self, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise _ConnectionError(FRAME_SIZE_ERROR, "WINDOW_UPDATE payload is not 4 bytes")
        increment = int.from_bytes(payload, "big") & 0x7FFFFFFF
        if stream_id == 0:
            if increment == 0:
                raise _ConnectionError(PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            self.send_window += increment
            if self.send_window > MAX_WINDOW:
                raise _ConnectionError(FLOW_CONTROL_ERROR, "connection window over 2^31-1")
            self._send_waiting()
            return
        stream = self.streams.get(stream_id)
        if stream is None:
            return   # a stream already answered or reset
        if increment == 0:
            self._reset(stream_id, PROTOCOL_ERROR)
            return
        stream.send_window += increment
        if stream.send_window > MAX_WINDOW:
            self._reset(stream_id, FLOW_CONTROL_ERROR)
            return
        if stream.out:
            self._send_data(stream)

    def _send_waiting(self) -> None:
        for stream in [s for s in self.streams.values() if s.out]:
            self._send_data(stream)

    @staticmethod
    def _strip(flags: int, payload: bytes, priority: bool) -> bytes:
        if flags & PADDED:
            if not payload or payload[0] >= len(payload):
                raise _ConnectionError(PROTOCOL_ERROR, "padding longer than the frame")
            payload = payload[1:len(payload) - payload[0]]
        if priority and flags & PRIORITY_FLAG:
            payload = payload[5:]
        return payload

    def _on_headers(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id == 0 or stream_id % 2 == 0:
            raise _ConnectionError(PROTOCOL_ERROR, f"HEADERS on stream {stream_id} (clients open odd streams)")
        block = self._strip(flags, payload, priority=True)
        if flags & END_HEADERS:
            self._on_header_block(flags, stream_id, block)
        else:
            self.continuation = (stream_id, flags, bytearray(block))

    def _on_continuation(self, flags: int, stream_id: int, payload: bytes) -> None:
        if self.continuation is None:
            raise _ConnectionError(PROTOCOL_ERROR, "CONTINUATION without HEADERS")
        _, first_flags, block = self.continuation
        block += payload
        if len(block) > MAX_HEADER_BLOCK:
            raise _ConnectionError(PROTOCOL_ERROR, f"header block larger than {MAX_HEADER_BLOCK} bytes")
        if flags & END_HEADERS:
            self.continuation = None
            self._on_header_block(first_flags, stream_id, bytes(block))

    def _on_header_block(self, flags: int, stream_id: int, block: bytes) -> None:
        headers = self._decode(block)
        stream = self.streams.get(stream_id)
        if stream is None:
            if stream_id <= self.last_stream_id:
                if flags & END_STREAM:
                    return   # trailers of a call already answered (or reset)
                raise _ConnectionError(PROTOCOL_ERROR, f"HEADERS reopen closed stream {stream_id}")
            self.last_stream_id = stream_id
            if self.goaway_sent or len(self.streams) >= MAX_STREAMS:
                self._reset(stream_id, REFUSED_STREAM)
                return
            stream = self.streams[stream_id] = _Stream(stream_id, self.peer_initial_window)
            stream.headers = headers
        elif not flags & END_STREAM:
            self._reset(stream_id, PROTOCOL_ERROR)   # trailers must end the request
            return
        if flags & END_STREAM:
            self._request_ended(stream)

    def _decode(self, block: bytes) -> list:
        """HPACK block -> [(name, value)]. A client repeats the same block call after call;
        a block that left the decoder's table as it was decodes the same way again until the
        table changes, so it is kept (decoding costs about 40 us a call)."""
        headers = self.header_cache.get(block)
        if headers is not None:
            return headers
        table = self.decoder.header_table
        entries = table.dynamic_entries
        before = (len(entries), entries[0] if entries else None, table.maxsize)
        try:
            headers = self.decoder.decode(block, raw=True)
        except hpack.HPACKError as e:
            raise _ConnectionError(COMPRESSION_ERROR, f"HPACK: {e}") from None
        if before[0] == len(entries) and (entries[0] if entries else None) is before[1] \
                and table.maxsize == before[2]:
            if len(self.header_cache) >= 64:
                self.header_cache.clear()
            self.header_cache[block] = headers
        else:
            self.header_cache.clear()   # the table changed: cached blocks may now decode differently
        return headers

    def _on_data(self, flags: int, stream_id: int, payload: bytes) -> None:
        if stream_id == 0:
            raise _ConnectionError(PROTOCOL_ERROR, "DATA on stream 0")
        flow = len(payload)
        self.recv_window -= flow
        if self.recv_window < 0:
            raise _ConnectionError(FLOW_CONTROL_ERROR, "DATA beyond the connection window")
        if self.recv_window < CONNECTION_WINDOW // 2:
            self.out += _frame(WINDOW_UPDATE, 0, 0, (CONNECTION_WINDOW - self.recv_window).to_bytes(4, "big"))
            self.recv_window = CONNECTION_WINDOW
        data = self._strip(flags, payload, priority=False)
        stream = self.streams.get(stream_id)
        if stream is None or stream.ended:
            if stream_id > self.last_stream_id:
                raise _ConnectionError(PROTOCOL_ERROR, f"DATA on idle stream {stream_id}")
            if stream is not None:
                self._reset(stream_id, STREAM_CLOSED)
            return   # a call already answered or reset: its late data is dropped
        stream.recv_window -= flow
        if stream.recv_window < 0:
            self._reset(stream_id, FLOW_CONTROL_ERROR)
            return
        stream.body += data
        limit = self.server.max_message_bytes + 5
        if len(stream.body) > limit:
            size = int.from_bytes(stream.body[1:5], "big") if len(stream.body) >= 5 else len(stream.body)
            self._answer(stream, None, grpc.StatusCode.RESOURCE_EXHAUSTED,
                         f"Received message larger than max ({size} vs. {self.server.max_message_bytes})")
            return
        if flags & END_STREAM:
            self._request_ended(stream)
        elif stream.recv_window < STREAM_WINDOW // 2:
            self.out += _frame(WINDOW_UPDATE, 0, stream_id, (STREAM_WINDOW - stream.recv_window).to_bytes(4, "big"))
            stream.recv_window = STREAM_WINDOW

    # -- calls ------------------------------------------------------------------------------
    def _request_ended(self, stream: _Stream) -> None:
        stream.ended = True
        method = path = content_type = timeout = encoding = None
        for name, value in stream.headers:
            if name == b":method":
                method = value
            elif name == b":path":
                path = value
            elif name == b"content-type":
                content_type = value
            elif name == b"grpc-timeout":
                timeout = value
            elif name == b"grpc-encoding":
                encoding = value
        if method != b"POST" or content_type is None or not content_type.startswith(b"application/grpc"):
            status = b"405" if method != b"POST" else b"415"
            self.out += self._header_frames(stream.id, _literal_indexed_name(8, status), end_stream=True)
            self._finish(stream)
            return
        try:
            call = self._call(stream, path, timeout, encoding)
        except ServingError as e:
            self._answer(stream, None, e.code, e.message)
            return
        run_request(call, lambda result, error: self._answered(stream, result, error))

    def _call(self, stream: _Stream, path, timeout, encoding):
        """The handler's coroutine for a complete request; ServingError with the status
        gRPC gives for a call that cannot be made."""
        method = self.server.methods.get(path)
        if method is None:
            raise ServingError(grpc.StatusCode.UNIMPLEMENTED, f"Method not found: {(path or b'').decode('latin-1')}")
        if encoding not in (None, b"identity"):
            raise ServingError(grpc.StatusCode.UNIMPLEMENTED, f"grpc-encoding {encoding.decode('latin-1')} "
                               "is not supported (send uncompressed messages)")
        deadline = None
        if timeout is not None:
            try:
                deadline = time.monotonic() + parse_timeout(timeout)
            except ValueError as e:
                raise ServingError(grpc.StatusCode.INTERNAL, str(e)) from None
        body, stream.body = stream.body, bytearray()
        if len(body) < 5 or len(body) != 5 + int.from_bytes(body[1:5], "big"):
            raise ServingError(grpc.StatusCode.INTERNAL, "a unary call carries exactly one length-prefixed "
                               f"message; got {len(body)} bytes")
        if body[0] != 0:
            raise ServingError(grpc.StatusCode.INTERNAL, "compressed message without a grpc-encoding")
        try:
            request = method.parse(bytes(body[5:]))
        except Exception as e:  # noqa: BLE001 - any parse failure of the client's bytes
            raise ServingError(grpc.StatusCode.INTERNAL, f"Failed to parse the request message: {e}") from None
        return method.handler(request, deadline)

    def _answered(self, stream: _Stream, result, error: BaseException | None) -> None:
        if stream.closed or self.closing:
            return
        if isinstance(error, asyncio.CancelledError):
            self._answer(stream, None, grpc.StatusCode.CANCELLED, "the call was cancelled")
        elif isinstance(error, ServingError):
            self._answer(stream, None, error.code, error.message)
        elif error is not None:
            log.error("gRPC call failed", exc_info=error)
            self._answer(stream, None, grpc.StatusCode.INTERNAL, f"Internal error: {type(error).__name__}: {error}")
        else:
            self._answer(stream, result if type(result) is bytes else result.SerializeToString())
        self._flush()

    # -- shutdown ---------------------------------------------------------------------------
    def goaway(self) -> None:
        """No new calls; those in flight are answered (RFC 9113 6.8)."""
        if not self.goaway_sent and not self.closing:
            self.goaway_sent = True
            self.out += _frame(GOAWAY, 0, 0, self.last_stream_id.to_bytes(4, "big") + NO_ERROR.to_bytes(4, "big"))
            self._flush()

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()


class GrpcServer:
    """The listener, its methods and its open connections."""

    def __init__(self, methods: dict[str, UnaryMethod], max_message_bytes: int):
        self.methods = {path.encode("ascii"): m for path, m in methods.items()}
        self.max_message_bytes = max_message_bytes
        self.connections: set[GrpcConnection] = set()
        self.listener: Listener | None = None
        self.port: int | None = None
        self._idle = asyncio.Event()

    def connection_idle(self) -> None:
        if not any(c.streams for c in self.connections):
            self._idle.set()

    async def stop(self, grace: float) -> None:
        """Stops accepting, tells every client (GOAWAY), waits up to `grace` seconds for
        the calls in flight, then closes the connections."""
        self.listener.close()
        for conn in list(self.connections):
            conn.goaway()
        self._idle.clear()
        self.connection_idle()
        try:
            await asyncio.wait_for(self._idle.wait(), grace)
        except asyncio.TimeoutError:
            log.warning("gRPC stop: calls still running after %.1f s are dropped", grace)
        for conn in list(self.connections):
            conn.close()


async def start_grpc_transport(methods: dict[str, UnaryMethod], sock: socket.socket, max_message_bytes: int,
                               balance: Balance | None = None) -> GrpcServer:
    """Serves `methods` on a listening socket (`listener.listen_socket`) from the running
    loop; balance: share connections with other worker processes (`listener.Balance`)."""
    server = GrpcServer(methods, max_message_bytes)
    server.listener = Listener(sock, lambda: GrpcConnection(server), balance)
    server.port = server.listener.port
    return server
