"""The log stores' statements are the models' tables, compiled once, taking the row builders'
values in their order."""

import pytest
from sqlalchemy import insert

from app.accesslog.models import AccessLogEntry
from app.checks import statements


@pytest.mark.parametrize("build", [statements.for_sqlite, statements.for_postgres])
def test_each_insert_names_the_columns_its_row_builder_fills(build):
    sql = build()
    columns = ", ".join(statements.ENTRY_COLUMNS)
    assert sql.insert_entries.startswith(f"INSERT INTO access_log ({columns}) VALUES (")
    alert_columns = ", ".join(statements.ALERT_COLUMNS)
    assert sql.insert_alerts.startswith(f"INSERT INTO alerts ({alert_columns}) VALUES (")


def test_postgres_locks_the_heads_it_reads_while_sqlite_already_holds_the_write_lock():
    postgres, sqlite = statements.for_postgres(), statements.for_sqlite()
    assert postgres.read_head.endswith("FOR UPDATE OF access_log_head")
    assert postgres.read_alert_head.endswith("FOR UPDATE")
    assert "FOR UPDATE" not in sqlite.read_head + sqlite.read_alert_head


def test_a_statement_whose_placeholders_differ_from_the_values_given_is_refused():
    reordered = ("decision_id", "id", *statements.ENTRY_COLUMNS[2:])
    with pytest.raises(ValueError, match="takes"):
        statements.prepare(insert(AccessLogEntry), statements.SQLITE, reordered)


def test_row_builders_give_a_value_per_placeholder():
    entry: dict[str, object] = {name: None for name in statements.ENTRY_COLUMNS}
    entry.update(reason={"code": "granted"}, data_subjects=[])
    alert = {name: None for name in statements.ALERT_COLUMNS}
    sql = statements.for_sqlite()
    assert len(statements.entry_rows([entry], "at")[0]) == sql.insert_entries.count("?")
    assert len(statements.alert_rows([alert], "at")[0]) == sql.insert_alerts.count("?")
