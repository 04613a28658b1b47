"""A database error is a 503 only when a retry can fix it; a bug is a 500."""
import logging

import pytest

from jwt_server.db import get_db
from tests.helpers import assert_problem


def view_running(sql):
    def view():
        get_db().execute(sql).fetchall()
        return {}

    return view


@pytest.mark.parametrize(
    "sql",
    [
        "SELEC id FROM users",  # a syntax error
        "SELECT no_such_column FROM users",
        "SELECT id FROM no_such_table",
    ],
)
def test_a_bug_in_sql_is_a_500_not_a_retry_later(app, client, caplog, sql):
    app.add_url_rule("/buggy", "buggy", view_running(sql))

    with caplog.at_level(logging.ERROR):
        response = client.get("/buggy", headers={"X-Request-ID": "buggy-1"})

    assert_problem(response, 500, "internal_error")
    assert "Retry-After" not in response.headers
    assert sql not in response.get_data(as_text=True)
    logged = [record for record in caplog.records if record.exc_info]
    assert logged and "buggy-1" in logged[0].getMessage()


def test_a_database_that_cannot_be_opened_is_a_503(app, client, tmp_path):
    app.config["DATABASE"] = str(tmp_path / "missing" / "db.sqlite")
    app.add_url_rule("/reads", "reads", view_running("SELECT 1"))

    response = client.get("/reads")

    assert_problem(response, 503, "database_unavailable")
    assert response.headers["Retry-After"].isdigit()
