"""Routes about the service itself: health and the OpenAPI document."""
import functools
import json
from pathlib import Path

from flask import Blueprint, current_app

from .db import connect

bp = Blueprint("meta", __name__)

OPENAPI_PATH = Path(__file__).with_name("openapi.json")


@functools.cache
def openapi_document():
    return json.loads(OPENAPI_PATH.read_text())


@bp.get("/health")
def health():
    """200 after a round trip to the database file (503 via the error handler).

    A new connection, not a worker's open one: that one would still read a
    file that has been deleted or moved away since.
    """
    connection = connect(current_app.config["DATABASE"])
    try:
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
    finally:
        connection.close()
    return {"status": "ok"}


@bp.get("/openapi.json")
def openapi():
    return openapi_document()
