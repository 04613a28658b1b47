"""gunicorn workers whose own answers are the app's problem documents.

gunicorn answers some requests itself, before the app runs: a request line
over its limit (414), too many header fields or one too long (431), anything
else that is not valid HTTP/1.1, malformed chunk framing included (400). Its
answers are HTML; ``ProblemDocuments`` makes them problem documents that the
app itself builds, so they carry what the app's answers carry (CORS headers
for the request's Origin, X-Request-ID, nosniff, no-store).

It also reads a chunked request body whole before the app runs, as nginx
does: Werkzeug reads a body of unknown length only up to
MAX_CONTENT_LENGTH and silently drops the rest, so a chunked body over
64 KiB would be cut and accepted instead of refused with a 413.

Mix it into any gunicorn worker class: ``GeventWorker`` (the one
gunicorn.conf.py selects) and ``ThreadWorker`` (gthread's) have it.
"""
import io
from datetime import timedelta

import gevent
from gunicorn import util
from gunicorn.http import errors as http_errors
from gunicorn.http.message import Message
from gunicorn.http.wsgi import Response, default_environ
from gunicorn.workers.ggevent import GeventWorker as GeventWorkerBase
from gunicorn.workers.gthread import ThreadWorker as GthreadWorker
from werkzeug.test import EnvironBuilder

from .errors import problem


def _errors(*names):
    """The gunicorn exceptions of these names that this gunicorn has.

    gunicorn 23, the last for Python 3.9 (PyPy's), lacks the newer ones: it
    never raises them either.
    """
    return tuple(getattr(http_errors, name) for name in names if hasattr(http_errors, name))


_CHUNK_FRAMING = _errors("InvalidChunkSize", "ChunkMissingTerminator", "InvalidChunkExtension")
_EXPECTATION_FAILED = _errors("ExpectationFailed")
_BAD_RESPONSE_HEADER = _errors("InvalidResponseHeader", "InvalidResponseHeaderName")


class MalformedChunkedBody(Exception):
    """A chunk framing error met while reading the body.

    gunicorn 23 raises those as OSError, which its workers take for a broken
    connection: they would close it without an answer. This one reaches the
    worker's ``handle_error``, as gunicorn 24's own ParseException does.
    """

# The request headers the app's error answers depend on (gunicorn's spelling).
_ANSWER_DEPENDS_ON = {"ORIGIN", "X-REQUEST-ID"}
_INTERNAL_ERROR = (
    500,
    "internal_error",
    "Something went wrong on the server. The X-Request-ID header identifies it in the logs.",
)


def describe(error, cfg):
    """``(status, code, detail)`` of the answer to an exception gunicorn raised."""
    if isinstance(error, http_errors.LimitRequestLine):
        return 414, "uri_too_long", (
            f"The request line (method, path and query) is longer than the "
            f"{cfg.limit_request_line} bytes this server accepts."
        )
    if isinstance(error, http_errors.LimitRequestHeaders):
        return 431, "request_header_fields_too_large", (
            f"The request has more than {cfg.limit_request_fields} header fields, "
            f"or one longer than {cfg.limit_request_field_size} bytes."
        )
    if isinstance(error, (*_CHUNK_FRAMING, MalformedChunkedBody)):
        return 400, "malformed_chunked_body", "The chunked request body is malformed."
    if isinstance(error, http_errors.UnsupportedTransferCoding):
        return 501, "not_implemented", "This server accepts no transfer coding but chunked."
    if isinstance(error, _EXPECTATION_FAILED):
        return 417, "expectation_failed", "This server accepts no Expect header but 100-continue."
    if isinstance(error, _BAD_RESPONSE_HEADER):
        return _INTERNAL_ERROR
    if isinstance(error, http_errors.ParseException):
        return 400, "bad_request", "The request is not valid HTTP/1.1."
    return _INTERNAL_ERROR


def problem_response(app, status, code, detail, request_headers):
    """The app's problem document, with every header its after-request hooks add.

    ``request_headers`` are the request's, or None when gunicorn could not
    parse them: the answer is then the one for an origin the app does not
    list, which every origin may read when CORS_ORIGINS is ``*``.
    """
    if request_headers is None:
        request_headers = [("Origin", "null")]
    environ = EnvironBuilder(headers=request_headers).get_environ()
    with app.request_context(environ):
        return app.process_response(problem(status, code, detail))


def write_problem(app, sock, status, code, detail, request_headers=None):
    """Send the app's problem document on ``sock``, closing the connection after it.

    Returns the response written, for the access log.
    """
    response = problem_response(app, status, code, detail, request_headers)
    response.headers["Connection"] = "close"
    head = [f"HTTP/1.1 {response.status}", *(f"{name}: {value}" for name, value in response.headers.items())]
    util.write_nonblock(sock, ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + response.get_data())
    return response


def hold_chunked_bodies(app, limit):
    """WSGI middleware: a chunked body, read whole (up to ``limit`` + 1 bytes), with a Content-Length.

    Over ``limit``, the app sees a Content-Length over MAX_CONTENT_LENGTH and
    answers its own 413, as for any body too large. A framing error raised
    while reading reaches the worker's ``handle_error``: a 400.
    """

    def application(environ, start_response):
        if "HTTP_TRANSFER_ENCODING" in environ:
            # gunicorn accepts a Transfer-Encoding only if it ends with chunked.
            try:
                body = environ["wsgi.input"].read(limit + 1)
            except _CHUNK_FRAMING as error:
                raise MalformedChunkedBody(error) from error
            del environ["HTTP_TRANSFER_ENCODING"]
            environ["CONTENT_LENGTH"] = str(len(body))
            environ["wsgi.input"] = io.BytesIO(body)
        return app(environ, start_response)

    return application


class ProblemDocuments:
    """Worker mixin: gunicorn's own error answers as the app's problem documents."""

    def load_wsgi(self):
        super().load_wsgi()
        self.flask_app = self.wsgi
        self.wsgi = hold_chunked_bodies(self.wsgi, self.flask_app.config["MAX_CONTENT_LENGTH"])

    def handle_error(self, req, client, addr, exc):
        """What gunicorn's handle_error does, with a problem document instead of HTML."""
        status, code, detail = describe(exc, self.cfg)
        addr = addr or ("", -1)  # a unix socket
        if status >= 500:
            self.log.exception("Error handling request")
        else:
            self.log.warning("Invalid request from ip=%s: %s", addr[0], exc)
        # A header gunicorn refused after reading them all comes with the request.
        req = req or getattr(exc, "req", None)
        if not isinstance(req, Message):
            req = None
        request_headers = None
        if req is not None:
            request_headers = [(name, value) for name, value in req.headers if name in _ANSWER_DEPENDS_ON]
        try:
            response = write_problem(self.flask_app, client, status, code, detail, request_headers)
        except OSError:
            self.log.debug("Failed to send error message.")
            return
        if req is not None:
            self.log_access(req, client, addr, response)

    def log_access(self, req, client, addr, response):
        environ = default_environ(req, client, self.cfg)
        environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = addr[0], str(addr[1])
        logged = Response(req, client, self.cfg)
        logged.status, logged.headers = response.status, list(response.headers.items())
        logged.sent = logged.response_length = len(response.get_data())
        self.log.access(logged, req, environ, timedelta(0))


class ThreadWorker(ProblemDocuments, GthreadWorker):
    pass


class GeventWorker(ProblemDocuments, GeventWorkerBase):
    """One greenlet per connection: a worker holds a thousand idle sockets
    beside its requests, where gthread would need a thread for each."""

    def handle_request(self, *args):
        """Serve one request, then let the worker's other connections have a turn.

        A keep-alive client that sends its next request at once finds it
        already read, so its greenlet would never wait and never yield: the
        worker's other connections then starved for seconds (a p99 of 2.5 to
        4 s on GET /my-pets against gthread's 60 to 110 ms, same run).
        """
        try:
            return super().handle_request(*args)
        finally:
            gevent.sleep(0)
