"""Security events, one JSON line each on stderr (and a count in /metrics).

Each line names the event, the request id, the user id and the client IP,
and never a password, a token or a hash: callers pass ids, not secrets.
"""
import json
import logging
import sys
from datetime import datetime, timezone

from flask import has_request_context, request

from . import metrics
from .headers import request_id

logger = logging.getLogger("jwt_server.audit")


class StderrHandler(logging.Handler):
    """Writes to the sys.stderr of the moment, which test runners swap."""

    def emit(self, record):
        sys.stderr.write(self.format(record) + "\n")
        sys.stderr.flush()


def event(name, user_id=None, **details):
    in_request = has_request_context()
    line = {
        "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        "event": name,
        "request_id": request_id() if in_request else None,
        "user_id": user_id,
        "ip": request.remote_addr if in_request else None,
        **details,
    }
    logger.info(json.dumps(line))
    metrics.count_event(name)


def init_app(app):
    if not logger.handlers:
        logger.addHandler(StderrHandler())
        logger.setLevel(logging.INFO)
        logger.propagate = False
