"""GET /docs: the API reference (Swagger UI) reading /openapi.json.

Swagger UI's files come from the flask-swagger-ui package, served by these
routes: the page fetches nothing from any other host.
"""
from importlib.resources import files

from flask import Blueprint, current_app, send_from_directory

bp = Blueprint("docs", __name__)

SWAGGER_UI = files("flask_swagger_ui") / "dist"
ASSET_MAX_AGE = 24 * 3600
# Relative URLs, so that the page also works when a proxy serves the API under a path.
PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>jwt-server API</title>
  <link rel="stylesheet" href="docs/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="docs/swagger-ui-bundle.js"></script>
  <script>SwaggerUIBundle({url: "openapi.json", dom_id: "#swagger-ui", deepLinking: true});</script>
</body>
</html>
"""


@bp.get("/docs")
def page():
    return current_app.response_class(PAGE, mimetype="text/html")


@bp.get("/docs/swagger-ui.css")
def stylesheet():
    return send_from_directory(SWAGGER_UI, "swagger-ui.css", max_age=ASSET_MAX_AGE)


@bp.get("/docs/swagger-ui-bundle.js")
def script():
    return send_from_directory(SWAGGER_UI, "swagger-ui-bundle.js", max_age=ASSET_MAX_AGE)
