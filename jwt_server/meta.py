"""Routes about the service itself: health and the OpenAPI document."""
import functools
import json
from pathlib import Path

from flask import Blueprint

from . import db

bp = Blueprint("meta", __name__)

OPENAPI_PATH = Path(__file__).with_name("openapi.json")


@functools.cache
def openapi_document():
    return json.loads(OPENAPI_PATH.read_text())


@bp.get("/health")
def health():
    """200 after a round trip to the database (503 via the error handler)."""
    db.ping()
    return {"status": "ok"}


@bp.get("/openapi.json")
def openapi():
    return openapi_document()
