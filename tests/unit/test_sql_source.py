"""`source: sql`: a database table (or query) read through SQLAlchemy + pandas; config errors, one-line preflight
messages with the fix, a password that never shows, and cache keys that follow the database's content."""
from __future__ import annotations

import re
import sys

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from tasks.data import sql_database as sql_module
from tasks.data.sources.sql import SqlData, masked_url
from tasks.data.tabular import load_tabular
from tasks.errors import ConfigError
from tasks.registry import load_components
from tests.support.helpers import write_pipelines
from tests.support.servers import free_port
from tests.support.tables import shop_frame

load_components()

SECRET = "s3cr3t-Pw"


def write_db(path, frame: pd.DataFrame, table: str = "customers") -> None:
    import sqlalchemy

    engine = sqlalchemy.create_engine(f"sqlite:///{path}")
    frame.to_sql(table, engine, index=False, if_exists="replace")
    engine.dispose()


@pytest.fixture
def shop_db(tmp_path):
    (tmp_path / "data").mkdir()
    write_db(tmp_path / "data" / "shop.db", shop_frame(150))
    return tmp_path


def sql(**keys) -> SqlData:
    return SqlData(**{"source": "sql", "url": "sqlite:///data/shop.db", "label_column": "label", **keys})


def only_issue(config: SqlData, base_dir) -> tuple[tuple, str]:
    issues = config.preflight(base_dir)
    assert len(issues) == 1, issues
    assert "\n" not in issues[0][1]
    return issues[0]


def test_a_table_loads_with_a_category_and_missing_numbers(shop_db):
    config = sql(table="customers")
    assert config.preflight(shop_db) == [] and config.modality == "tabular"
    splits = load_tabular(config, seed=0, base_dir=shop_db)
    assert splits.task == "classification" and splits.classes == ["churn", "keep"]
    assert sum(splits.sizes().values()) == 150
    assert "spend" in splits.feature_names and any(n.startswith("region=") for n in splits.feature_names)
    assert not np.isnan(splits.X["train"]).any()  # the 12 missing spends are imputed


def test_a_query_loads_its_result_with_read_options(shop_db):
    config = sql(query="SELECT region, spend, label FROM customers WHERE spend IS NOT NULL AND region != :skip",
                 read_options={"params": {"skip": "east"}})
    assert config.preflight(shop_db) == []
    features, label, _ = config.load_frame(shop_db)
    frame = shop_frame(150)
    kept = frame[frame["spend"].notna() & (frame["region"] != "east")]
    assert list(features.columns) == ["region", "spend"] and len(label) == len(kept) > 0


@pytest.mark.parametrize("keys,fragment", [
    ({"table": "customers", "query": "SELECT 1"}, "give `table` or `query`, not both"),
    ({}, "give `table: <name>` (a whole table) or `query: SELECT ...`"),
    ({"table": "customers", "read_options": {"chunksize": 10}}, "read_options.chunksize is set by the source"),
    ({"table": "customers", "url": "not a url"}, "`url` is not a SQLAlchemy URL"),
    ({"table": "customers", "hots": "db"}, "Extra inputs are not permitted"),
])
def test_config_errors(keys, fragment):
    with pytest.raises(ValidationError, match=re.escape(fragment)):
        sql(**keys)


def test_validate_reports_both_table_and_query_located_in_one_line(tmp_path, capsys):
    from flows.cli import main

    write_pipelines(tmp_path, "pipelines:\n  p:\n    data: {source: sql, url: 'sqlite:///x.db', table: t, query: "
                    "'SELECT 1', label_column: y}\n    model: {type: mlp}\n    train: {backend: torch, epochs: 1}\n")
    assert main(["validate", "--file", str(tmp_path / "pipelines.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert "pipelines.yaml:3: pipelines.p.data.query: give `table` or `query`, not both" in err, err
    assert len(err.splitlines()) == 1


def test_the_password_never_shows(tmp_path, monkeypatch):
    port = free_port()  # nothing listens there: refused at once
    config = sql(url=f"postgresql://ana:{SECRET}@127.0.0.1:{port}/sales", table="customers")
    shown = [config.describe(), repr(config), str(config), config.model_dump_json(),
             str(config.model_dump(mode="json")), str(config.resolved_path(tmp_path))]
    assert config.describe() == f"sql:postgresql://ana:***@127.0.0.1:{port}/sales#customers"
    (key, message), = config.preflight(tmp_path)
    assert key == ("url",) and f"cannot connect to postgresql at 127.0.0.1:{port}/sales as ana" in message
    assert "refused" in message.lower()
    for text in shown + [message]:
        assert SECRET not in text, text
    assert config.url.endswith(f"{SECRET}@127.0.0.1:{port}/sales")  # the config itself keeps it, to connect


def test_masking_keeps_references_and_hides_query_passwords():
    assert masked_url("postgresql://me:pw@db/x") == "postgresql://me:***@db/x"
    assert masked_url("postgresql+psycopg://me:${PGPASS}@db:5432/x") == "postgresql+psycopg://me:${PGPASS}@db:5432/x"
    assert masked_url("postgresql://me@db:5432/x?password=pw&sslmode=require") == \
        "postgresql://me@db:5432/x?password=***&sslmode=require"
    assert masked_url("sqlite:///data/shop.db") == "sqlite:///data/shop.db"


def test_a_logged_config_validates_again_here_but_a_masked_one_elsewhere_says_how_to_give_the_password(
        tmp_path, monkeypatch):
    """A fusion re-reads its members' data sections from their logged form (same process); a rerun reads the
    logged pipeline.yaml in another process, where the password is gone."""
    config = sql(url=f"postgresql://ana:{SECRET}@db.example.com/sales", table="customers")
    dumped = config.model_dump(mode="json")
    assert SqlData.model_validate(dumped).url == config.url
    monkeypatch.setattr(sql_module, "_UNMASKED", {})
    (key, message), = SqlData.model_validate(dumped).preflight(tmp_path)
    assert key == ("url",) and "the password in `url` is masked (`***`)" in message and "${NAME}" in message


def test_environment_references_fill_the_url_when_connecting(tmp_path, monkeypatch):
    config = sql(url="postgresql://ana:${FF_TEST_PG_PW}@127.0.0.1:5432/sales", table="customers")
    monkeypatch.delenv("FF_TEST_PG_PW", raising=False)
    assert only_issue(config, tmp_path) == (("url",), "environment variable FF_TEST_PG_PW (named in `url` as "
                                                      "${FF_TEST_PG_PW}) is not set")
    monkeypatch.setenv("FF_TEST_PG_PW", "p@ss/word")
    url = config.resolved_url(tmp_path)
    assert url.password == "p@ss/word" and url.drivername == "postgresql+psycopg"
    assert "${FF_TEST_PG_PW}" in config.model_dump(mode="json")["url"]  # logged as the reference, not the value
    assert config.scrub("auth failed for p@ss/word") == "auth failed for ***"


@pytest.mark.parametrize("url,driver", [("postgresql://h/db", "postgresql+psycopg"),
                                        ("postgres://h/db", "postgresql+psycopg"),
                                        ("postgresql+psycopg2://h/db", "postgresql+psycopg2"),
                                        ("mysql+pymysql://h/db", "mysql+pymysql")])
def test_postgres_gets_psycopg_3_unless_a_driver_is_named(url, driver, tmp_path):
    assert sql(url=url, table="t").resolved_url(tmp_path).drivername == driver


def test_unknown_table_lists_the_tables_with_did_you_mean(shop_db):
    write_db(shop_db / "data" / "shop.db", shop_frame(20), table="orders")
    assert only_issue(sql(table="custmers"), shop_db) == (
        ("table",), "unknown table 'custmers'; did you mean 'customers'? (tables: customers, orders)")


def test_unknown_columns_and_options_say_did_you_mean(shop_db):
    issues = sql(table="customers", label_column="lable", features=["spnd", "region"]).preflight(shop_db)
    assert issues == [(("label_column",), "unknown column 'lable'; did you mean 'label'? (columns: region, spend, "
                                          "label)"),
                      (("features", 0), "unknown column 'spnd'; did you mean 'spend'? (columns: region, spend, label)")]
    key, message = only_issue(sql(table="customers", read_options={"parse_date": ["day"]}), shop_db)
    assert key == ("read_options", "parse_date") and "did you mean 'parse_dates'?" in message
    key, message = only_issue(sql(query="SELECT region, labl FROM customers"), shop_db)
    assert key == ("query",) and "the query failed" in message and "labl" in message


def test_a_missing_sqlite_file_names_the_resolved_path_and_is_not_created(tmp_path):
    key, message = only_issue(sql(url="sqlite:///data/nope.db", table="customers"), tmp_path)
    assert key == ("url",) and f"sqlite database not found: {(tmp_path / 'data' / 'nope.db').resolve()}" in message
    assert not (tmp_path / "data" / "nope.db").exists()
    with pytest.raises(ConfigError, match="sqlite database not found"):
        load_tabular(sql(url="sqlite:///data/nope.db", table="customers"), seed=0, base_dir=tmp_path)


def test_a_missing_driver_names_the_extra_to_install(tmp_path, monkeypatch):
    for module in [m for m in sys.modules if m == "psycopg" or m.startswith("psycopg.")]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setitem(sys.modules, "psycopg", None)  # `import psycopg` fails as when it is not installed
    key, message = only_issue(sql(url="postgresql://ana@127.0.0.1:5432/sales", table="customers"), tmp_path)
    assert key == ("url",) and "driver is not installed" in message
    assert message.endswith("pip install 'fuseflow[postgres]'")
    key, message = only_issue(sql(url="nosuchdb://h/x", table="t"), tmp_path)
    assert "unknown database dialect or driver 'nosuchdb'" in message


def test_the_step_cache_keys_on_the_sqlite_files_content(shop_db):
    from tasks.cache.fingerprint import fingerprint_inputs

    config = sql(table="customers")
    first_config, first_data = fingerprint_inputs({"config": config}, shop_db)
    assert first_config["config.url"] == '"sqlite:///data/shop.db"' and set(first_data) == {"config.file"}
    assert fingerprint_inputs({"config": config}, shop_db)[1] == first_data
    write_db(shop_db / "data" / "shop.db", shop_frame(150, seed=1))
    assert fingerprint_inputs({"config": config}, shop_db)[1] != first_data


def test_a_servers_rows_key_the_cache(tmp_path, monkeypatch):
    """A server's table changes without the config: its rows are the data part of the key (read once)."""
    from tasks.cache.fingerprint import fingerprint_inputs

    reads = []
    monkeypatch.setattr(SqlData, "read", lambda self, base_dir: reads.append(1) or shop_frame(150, seed=len(reads) // 3))
    config = sql(url=f"postgresql://ana:{SECRET}@db/sales", table="customers")
    keys, data = fingerprint_inputs({"config": config}, tmp_path)
    assert SECRET not in str(keys) and set(data) == {"config.file"}
    assert fingerprint_inputs({"config": config}, tmp_path)[1] == data and len(reads) == 1  # memoised
    again = sql(url=f"postgresql://ana:{SECRET}@db/sales", table="customers")
    assert fingerprint_inputs({"config": again}, tmp_path)[1] == data  # same rows, same key
    reads.extend([1, 1])
    changed = sql(url=f"postgresql://ana:{SECRET}@db/sales", table="customers")
    assert fingerprint_inputs({"config": changed}, tmp_path)[1] != data


def test_a_text_column_gives_a_text_dataset(tmp_path):
    frame = pd.DataFrame({"review": ["good", "bad", "fine", "awful"] * 10, "label": ["pos", "neg", "pos", "neg"] * 10})
    write_db(tmp_path / "reviews.db", frame, table="reviews")
    config = sql(url="sqlite:///reviews.db", table="reviews", text_column="review")
    assert config.modality == "text" and config.preflight(tmp_path) == []
    loaded = config.load_text_datasets(tmp_path)
    assert list(loaded) == ["train"] and loaded["train"].num_rows == 40
    assert set(loaded["train"].column_names) == {"review", "label"}


def test_a_schema_qualified_table_and_a_file_that_is_no_database(shop_db):
    assert sql(table="main.customers").preflight(shop_db) == []
    assert only_issue(sql(table="main.custmers"), shop_db) == (
        ("table",), "unknown table 'main.custmers'; did you mean 'main.customers'? (tables: main.customers)")
    (shop_db / "data" / "notes.db").write_text("not a database\n" * 200, encoding="utf-8")
    key, message = only_issue(sql(url="sqlite:///data/notes.db", table="customers"), shop_db)
    assert key == ("url",) and message.startswith("cannot read the database at ") and "not a database" in message
