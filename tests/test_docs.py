"""GET /docs: the API reference page and the Swagger UI files it loads, all from this server."""
import json
import re
from pathlib import Path

DOCUMENT = json.loads((Path(__file__).resolve().parent.parent / "jwt_server" / "openapi.json").read_text())


def test_docs_page_is_html_that_loads_only_this_servers_files(client):
    page = client.get("/docs")

    assert page.status_code == 200
    assert page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    loaded = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert sorted(loaded) == ["docs/swagger-ui-bundle.js", "docs/swagger-ui.css"]
    assert 'url: "openapi.json"' in html
    assert "//" not in "".join(loaded)


def test_swagger_ui_files_are_served_with_their_types(client):
    script = client.get("/docs/swagger-ui-bundle.js")
    stylesheet = client.get("/docs/swagger-ui.css")

    assert script.status_code == stylesheet.status_code == 200
    assert script.mimetype in {"text/javascript", "application/javascript"}
    assert stylesheet.mimetype == "text/css"
    assert b"SwaggerUIBundle" in script.get_data()
    assert b".swagger-ui" in stylesheet.get_data()
    assert script.headers["X-Content-Type-Options"] == "nosniff"  # so the types above must be right
    assert script.cache_control.max_age > 0


def test_the_document_describes_the_docs_routes_as_they_answer(client):
    for path in ("/docs", "/docs/swagger-ui.css", "/docs/swagger-ui-bundle.js"):
        documented = DOCUMENT["paths"][path]["get"]["responses"]["200"]["content"]
        assert list(documented) == [client.get(path).mimetype], path
