"""The HTTP connection: uvicorn's h11 protocol with timeouts, JSON errors and half-closes.

uvicorn's own h11 protocol keeps a connection that sends nothing, or trickles
its headers a line at a time (slowloris), open forever, answers HTTP-level
errors in plain text and drops the answer of a client that half-closes after
its request. :func:`guarded_protocol` returns its subclass that:

- closes a connection with no request under way after ``idle_timeout_s``
  (a fresh one, or one between requests: uvicorn's keep-alive timeout);
- answers 408 when the headers of a request are not complete
  ``header_timeout_s`` after its first byte;
- closes a connection whose request body is not complete ``body_timeout_s``
  after its headers (plus :data:`BODY_GRACE_S`, so that the predict route's
  own 408 normally speaks first), with a 408 if nothing was answered yet;
- gives up on a client that has not taken any of its answer for
  ``body_timeout_s`` (a client that never reads);
- answers HTTP-level errors (a bad request line, headers over
  :data:`MAX_HEAD_BYTES`, an unsupported ``Transfer-Encoding``) as
  ``{"error": ...}``: 431 for the headers, else 400 (also where h11 hints
  501: no client input gets a 5xx);
- answers a client that half-closes (``shutdown(SHUT_WR)``) after a complete
  request, then closes.

Example:
    >>> protocol = guarded_protocol(idle_timeout_s=5, header_timeout_s=10,
    ...                             body_timeout_s=10)
    >>> protocol.header_timeout_s
    10
"""

import http
import logging

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from fcn_tf.serve.protocol import error_body

MAX_HEAD_BYTES = 16 * 1024  # request line and headers together
BODY_GRACE_S = 0.5
_log = logging.getLogger("fcn_tf.serve")


def raw_response(status, message):
    """The bytes of a complete ``{"error": message}`` answer that closes the connection."""
    body = error_body(message)
    reason = http.HTTPStatus(status).phrase
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode("ascii") + body


def head_too_large(size=None):
    """The message of a 431: a request line and headers over :data:`MAX_HEAD_BYTES`."""
    amount = f"{size:,} bytes" if size else f"more than {MAX_HEAD_BYTES:,} bytes"
    return (f"request headers too large: {amount} of request line and headers, the limit is "
            f"{MAX_HEAD_BYTES:,}. Send the images in the body, not in the URL or headers.")


def _protocol_error_message(error):
    status = error.error_status_hint
    if status == 431:
        return status, head_too_large()
    if status == 501:
        return 400, (f"Transfer-Encoding not supported ({error}); send the body as is, with a "
                        "Content-Length, or Transfer-Encoding: chunked.")
    hint = ""
    if "host" in str(error).lower():
        hint = " HTTP/1.1 requests need a Host header."
    elif "content-length" in str(error).lower():
        hint = " Send one Content-Length header with the body's size in bytes."
    return 400, (f"not a valid HTTP/1.1 request ({error}).{hint} Send a request such as "
                 "POST /v1/models/NAME:predict HTTP/1.1 with a JSON body.")


class _Connection(h11.Connection):
    """h11's connection, remembering the last protocol error it raised."""

    last_error = None

    def next_event(self):
        try:
            return super().next_event()
        except h11.RemoteProtocolError as error:
            self.last_error = error
            raise


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with header, body, idle and send timeouts (module docstring).

    Use :func:`guarded_protocol` to set the timeouts.
    """

    idle_timeout_s = 5.0
    header_timeout_s = 10.0
    body_timeout_s = 10.0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.conn = _Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        self.timeout_keep_alive = self.idle_timeout_s
        self._timers = {}
        self._peer_closed = False

    # --- timers ---------------------------------------------------------------------

    def _arm(self, name, delay, callback):
        if name not in self._timers:
            self._timers[name] = self.loop.call_later(delay, self._fire, name, callback)

    def _disarm(self, name):
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()

    def _fire(self, name, callback):
        self._timers.pop(name, None)
        if not self.transport.is_closing():
            callback()

    def _watch(self):
        """Arm or disarm the header and body timers for the state of the request."""
        state = self.conn.their_state
        if state is h11.IDLE:
            self._disarm("body")
            if self.conn.trailing_data[0]:  # part of a request head has arrived
                self._arm("header", self.header_timeout_s, self._header_timeout)
        elif state is h11.SEND_BODY:
            self._disarm("header")
            self._arm("body", self.body_timeout_s + BODY_GRACE_S, self._body_timeout)
        else:
            self._disarm("header")
            self._disarm("body")

    def _header_timeout(self):
        if self.conn.their_state is not h11.IDLE:
            return
        _log.info("closed a connection whose request headers took over %g s", self.header_timeout_s)
        self._answer_and_close(408, (
            f"request headers not received in time: they were not complete "
            f"{self.header_timeout_s:g} s after the request began (the server's "
            "--header-timeout-s). Send the whole request at once."))

    def _body_timeout(self):
        if self.conn.their_state is not h11.SEND_BODY:
            return
        _log.info("closed a connection whose request body took over %g s", self.body_timeout_s)
        if self.cycle is not None and self.cycle.response_started:
            self.transport.close()  # answered already; the rest of the body is not awaited
            return
        self._answer_and_close(408, (
            f"request body not received in time: it was not complete {self.body_timeout_s:g} s "
            "after the headers (the server's --body-timeout-s). Send the whole body at once."))

    def _send_timeout(self):
        _log.info("closed a connection whose client took none of its answer for %g s",
                  self.body_timeout_s)
        self.transport.abort()

    def _answer_and_close(self, status, message):
        """Answer ``status`` unless an answer has begun, end the request's cycle, close."""
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            if cycle.response_started:
                self.transport.close()
                return
            cycle.disconnected = True  # the app's receive() now says disconnect, send() is a no-op
            cycle.message_event.set()
        self.transport.write(raw_response(status, message))
        self.transport.close()

    # --- uvicorn's protocol interface -----------------------------------------------

    def connection_made(self, transport):
        super().connection_made(transport)
        # uvicorn arms its keep-alive (idle) timeout only after a response.
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive,
                                                            self.timeout_keep_alive_handler)

    def data_received(self, data):
        super().data_received(data)
        if not self.transport.is_closing():
            self._watch()

    def on_response_complete(self):
        super().on_response_complete()
        if self.transport.is_closing():
            return
        self._watch()
        if self._peer_closed and (self.conn.their_state is not h11.DONE
                                  or self.cycle.response_complete):
            self.transport.close()  # every complete request the client sent is answered

    def eof_received(self):
        """A half-close: keep the connection to write the answer if the request is complete."""
        if (self.conn.their_state is h11.DONE and self.cycle is not None
                and not self.cycle.response_complete):
            self._peer_closed = True
            return True
        return None  # the transport closes; an incomplete request is a disconnect

    def connection_lost(self, exc):
        for name in list(self._timers):
            self._disarm(name)
        super().connection_lost(exc)

    def pause_writing(self):
        super().pause_writing()
        self._arm("send", self.body_timeout_s, self._send_timeout)

    def resume_writing(self):
        super().resume_writing()
        self._disarm("send")

    def send_400_response(self, msg):
        """An HTTP-level error, as ``{"error": ...}`` with h11's status hint."""
        error = self.conn.last_error
        if error is None:
            status, message = 400, f"not a valid HTTP/1.1 request ({msg})"
        else:
            status, message = _protocol_error_message(error)
        self.logger.info("HTTP-level error %d: %s", status, error or msg)
        self._answer_and_close(status, message)


def guarded_protocol(idle_timeout_s, header_timeout_s, body_timeout_s):
    """A :class:`GuardedH11Protocol` subclass with these timeouts (``uvicorn.Config(http=...)``)."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {
        "idle_timeout_s": idle_timeout_s, "header_timeout_s": header_timeout_s,
        "body_timeout_s": body_timeout_s})


__all__ = ["GuardedH11Protocol", "MAX_HEAD_BYTES", "guarded_protocol", "head_too_large",
           "raw_response"]
