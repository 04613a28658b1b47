"""What clients send: the request body, and the rules its fields follow.

Each ``check_*`` function returns an error message, or None when the value
is acceptable, so that a route can collect every problem into one 422.
"""
import json
import re

from flask import request
from werkzeug.routing import IntegerConverter

from .errors import APIError, validation_error
from .security import normalized

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"

_USERNAME = re.compile(r"[A-Za-z0-9_.-]{3,32}")


class AsciiIntegerConverter(IntegerConverter):
    """``<int:...>`` of ASCII digits only.

    Werkzeug's own takes any Unicode digit (``\\d``): a fullwidth or an
    Arabic-Indic one would name pet 1.
    """

    regex = r"[0-9]+"
    signed_regex = r"-?[0-9]+"


def read_body(*, form_allowed=False):
    """The body as a dict: JSON (or a form, where allowed); no body is ``{}``.

    The JSON is parsed here rather than by ``request.get_json`` because
    Werkzeug lets a few thousand nested brackets escape as a RecursionError,
    which would otherwise become a 500.
    """
    data = request.get_data(cache=True)
    if not data and not request.content_length:
        return {}
    if form_allowed and request.mimetype == FORM:
        return request.form.to_dict()
    if request.mimetype != JSON:
        accepted = f"{JSON} or {FORM}" if form_allowed else JSON
        raise APIError(415, "unsupported_media_type", f"The request body must be {accepted}.")
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):
        raise APIError(400, "malformed_json", "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise APIError(400, "invalid_body", "The request body must be a JSON object.")
    return body


def field_error(field, message):
    return {"field": field, "message": message}


def required_text(body, field, label):
    """An error if ``body[field]`` is missing, empty or not a string ("Username required.")."""
    value = body.get(field)
    if not isinstance(value, str) or not value:
        return field_error(field, f"{label} required.")
    return None


def is_text(value):
    """A str that SQLite and bcrypt can take: encodable as UTF-8, no NUL."""
    if not isinstance(value, str) or "\0" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_username(value):
    if not isinstance(value, str) or not _USERNAME.fullmatch(value):
        return "Username must be 3 to 32 characters: letters, digits, '_', '.' or '-'."
    return None


def check_new_password(value):
    """8 to 72 bytes once NFKC-normalized: what gets hashed (security.hash_password)."""
    if not is_text(value) or not 8 <= len(normalized(value).encode("utf-8")) <= 72:
        return "Password must be 8 to 72 bytes of text (after Unicode NFKC normalization), without NUL characters."
    return None


def check_pet_name(value):
    if not is_text(value) or not 1 <= len(value.strip()) <= 100:
        return "Name must be 1 to 100 characters, not counting surrounding spaces."
    return None


def check_species(value):
    if value is not None and (not is_text(value) or not 1 <= len(value.strip()) <= 50):
        return "Species must be null or 1 to 50 characters, not counting surrounding spaces."
    return None


def query_int(name, default, low, high):
    """A whole-number query parameter within [low, high], or a 422."""
    raw = request.args.get(name)
    if raw is None:
        return default
    if not re.fullmatch(r"[0-9]{1,19}", raw) or not low <= int(raw) <= high:
        raise validation_error([field_error(name, f"{name} must be a whole number from {low} to {high}.")])
    return int(raw)
