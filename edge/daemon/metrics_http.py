"""The Prometheus endpoint: one thread, every connection multiplexed, each with a deadline for its whole request.

The first server (http.server, one request at a time) let one client stall
all the others: its 2 s timeout applied to each receive, so a client sending
one byte every 1.5 s held the only worker for as long as it liked, thirty
idle connections queued a scrape for 17 s, and shutdown waited for the
client in hand (39 s after SIGTERM). Here one thread waits on every socket
at once (``selectors``), so a slow client delays no one else, and:

* every connection has :data:`REQUEST_DEADLINE_S` from accept to the last
  byte of the answer, whatever it sends or reads meanwhile; past it, it is
  closed;
* at most :data:`MAX_CONNECTIONS` are open; a new one at the limit closes
  the oldest (so idle connections cannot lock a scrape out: whoever holds
  them must keep reconnecting, and each is dropped in turn);
* at most :data:`MAX_CONNECTIONS_PER_S` are accepted a second (a flood waits
  in the kernel's queue); a new connection is read at once, so a scrape that
  sends its request with the connection is answered before anything evicts it;
* a request is at most :data:`MAX_REQUEST_BYTES` (request line and headers);
  the body sent is the one the telemetry thread rendered, never rendered here;
* :meth:`MetricsServer.shutdown` wakes the thread through a pipe and closes
  every socket without waiting for any client.
"""

import errno
import ipaddress
import os
import selectors
import socket
import threading
import time

#: From accept to the last byte sent; Prometheus asks and reads a few kB within milliseconds on loopback.
REQUEST_DEADLINE_S = 2.0
#: Connections open at once; a scrape needs one. At the limit the oldest is closed.
MAX_CONNECTIONS = 16
#: Request line and headers; Prometheus sends about 300 bytes.
MAX_REQUEST_BYTES = 8192
#: Connections accepted per second, at most (Prometheus scrapes every 15 s): past it, new clients wait in the
#: kernel's queue until the next second, so a connection flood costs this thread a bounded share of the CPU.
MAX_CONNECTIONS_PER_S = 50
#: Longest the thread waits on the waiting sockets before looking at the deadlines again.
_POLL_S = 0.5


def socket_family(host):
    try:
        return socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        return socket.AF_INET


class Connection:
    __slots__ = ("sock", "address", "deadline", "received", "outgoing", "accepted")

    def __init__(self, sock, address, now):
        self.sock, self.address, self.accepted = sock, address, now
        self.deadline = now + REQUEST_DEADLINE_S
        self.received = b""
        self.outgoing = None                        # bytes left to send, once the request is answered


class MetricsServer:
    """The endpoint on ``address``; ``body()`` returns the bytes to serve; ``counters`` is a Counter it adds to
    (``http_timeouts``, ``http_evicted``, ``http_disconnects``, ``http_requests``)."""

    def __init__(self, address, body, counters, clock=time.monotonic):
        self.body, self.counters, self.clock = body, counters, clock
        self._listener = socket.socket(socket_family(address[0]), socket.SOCK_STREAM)
        try:
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._listener.bind(address)
            self._listener.listen(MAX_CONNECTIONS)
            self._listener.setblocking(False)
        except BaseException:
            self._listener.close()
            raise
        self.server_address = self._listener.getsockname()[:2]
        self._wake_read, self._wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, "listen")
        self._selector.register(self._wake_read, selectors.EVENT_READ, "wake")
        self._connections = {}                      # fileno -> Connection, in accept order
        self._stopping = False
        self._accept_times = []                     # when the last connections came in (rate limit)
        self._paused_until = None                   # accepting paused until then (over the rate limit)
        self._thread = None

    def start(self, name="metrics-http"):
        self._thread = threading.Thread(target=self.serve_forever, name=name, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self):
        try:
            while not self._stopping:
                for key, mask in self._selector.select(self._timeout()):
                    if key.data == "listen":
                        self._accept()
                    elif key.data == "wake":
                        self._drain_wake()
                    else:
                        self._service(key.data, mask)
                self._expire()
                if self._paused_until is not None and self.clock() >= self._paused_until:
                    self._paused_until = None
                    self._selector.register(self._listener, selectors.EVENT_READ, "listen")
        finally:
            self._close_all()

    def shutdown(self, wait_s=1.0):
        """Stop serving now: no client is waited for. Safe to call twice."""
        self._stopping = True
        try:
            os.write(self._wake_write, b"!")
        except OSError:
            pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(wait_s)

    def server_close(self):
        if self._thread is None or not self._thread.is_alive():
            self._close_all()

    # -- the event loop's parts ------------------------------------------------------------------------------

    def _timeout(self):
        times = [c.deadline for c in self._connections.values()]
        if self._paused_until is not None:
            times.append(self._paused_until)
        return max(0.0, min([_POLL_S] + [t - self.clock() for t in times]))

    def _accept(self):
        while True:
            if not self._rate_ok():                 # the kernel's queue holds new clients until the next second
                self._paused_until = self._accept_times[0] + 1.0
                self._selector.unregister(self._listener)
                return
            try:
                sock, address = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:                  # EMFILE and the like: the next poll tries again
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self.counters["http_accept_errors"] += 1
                    return
                self.counters["http_errors"] += 1   # anything else: counted, and the next poll tries again
                return
            if len(self._connections) >= MAX_CONNECTIONS:
                oldest = next(iter(self._connections.values()))
                self.counters["http_evicted"] += 1
                self._close(oldest)
            sock.setblocking(False)
            connection = Connection(sock, address, self.clock())
            self._accept_times.append(connection.accepted)
            self._connections[sock.fileno()] = connection
            self._selector.register(sock, selectors.EVENT_READ, connection)
            self._service(connection, selectors.EVENT_READ)      # a request sent with the connect: answered now

    def _rate_ok(self):
        """Below MAX_CONNECTIONS_PER_S over the last second (else new connections wait in the kernel's queue)."""
        now = self.clock()
        self._accept_times = [t for t in self._accept_times if now - t < 1.0]
        return len(self._accept_times) < MAX_CONNECTIONS_PER_S

    def _drain_wake(self):
        try:
            while os.read(self._wake_read, 64):
                pass
        except OSError:
            pass

    def _service(self, connection, mask):
        """Read or write one connection. Nothing a client does may end the thread: an error closes that one."""
        if connection.sock.fileno() < 0:            # closed earlier in this batch of events (evicted, say)
            return
        try:
            if mask & selectors.EVENT_READ and connection.outgoing is None:
                try:
                    data = connection.sock.recv(4096)
                except (BlockingIOError, InterruptedError):    # nothing yet (a connection just accepted)
                    return
                if not data:
                    self.counters["http_disconnects"] += 1
                    self._close(connection)
                    return
                connection.received += data
                answer = answer_request(connection.received, self.body)
                if answer is not None:
                    connection.outgoing = answer
                    self._selector.modify(connection.sock, selectors.EVENT_WRITE, connection)
                    self._send(connection)
            elif mask & selectors.EVENT_WRITE:
                self._send(connection)
        except (ConnectionError, TimeoutError):
            self.counters["http_disconnects"] += 1
            self._close(connection)
        except Exception:                           # noqa: BLE001 (an OSError we did not foresee, a bug)
            self.counters["http_errors"] += 1
            self._close(connection)

    def _send(self, connection):
        try:
            sent = connection.sock.send(connection.outgoing)
        except (BlockingIOError, InterruptedError):
            return
        connection.outgoing = connection.outgoing[sent:]
        if not connection.outgoing:
            self.counters["http_requests"] += 1
            self._close(connection)

    def _expire(self):
        now = self.clock()
        for connection in [c for c in self._connections.values() if c.deadline <= now]:
            self.counters["http_timeouts"] += 1
            self._close(connection)

    def _close(self, connection):
        self._connections.pop(connection.sock.fileno(), None)
        try:
            self._selector.unregister(connection.sock)
        except (KeyError, ValueError):
            pass
        connection.sock.close()

    def _close_all(self):
        for connection in list(self._connections.values()):
            self._close(connection)
        if self._listener.fileno() >= 0:
            try:
                self._selector.unregister(self._listener)
            except (KeyError, ValueError):
                pass
            self._listener.close()
        for fd in (self._wake_read, self._wake_write):
            try:
                os.close(fd)
            except OSError:
                pass
        self._wake_read = self._wake_write = -1
        self._selector.close()


_REASONS = {200: "OK", 400: "Bad Request", 405: "Method Not Allowed", 431: "Request Header Fields Too Large"}


def answer_request(received, body):
    """The full response to the request in ``received``, or None while its headers are still incomplete."""
    end = received.find(b"\r\n\r\n")
    if end < 0:
        end = received.find(b"\n\n")                # tolerated, as http.server does
    if end < 0:
        return _response(431, b"request too long\n") if len(received) > MAX_REQUEST_BYTES else None
    if end > MAX_REQUEST_BYTES:
        return _response(431, b"request too long\n")
    parts = received[:end].split(b"\n", 1)[0].strip().split()
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
        return _response(400, b"bad request\n")
    if parts[0] != b"GET":
        return _response(405, b"only GET\n", extra=b"Allow: GET\r\n")
    return _response(200, body(), content_type=b"text/plain; version=0.0.4")


def _response(status, payload, content_type=b"text/plain", extra=b""):
    head = (f"HTTP/1.0 {status} {_REASONS[status]}\r\n".encode() + b"Content-Type: " + content_type + b"\r\n"
            + f"Content-Length: {len(payload)}\r\n".encode() + extra + b"Connection: close\r\n\r\n")
    return head + payload
