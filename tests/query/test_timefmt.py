"""``to_string`` formats: the Python renderer used on SQLite equals PostgreSQL's to_char."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import make_url

from steward.query.timefmt import FormatError, format_datetime, parse_format
from tests.store.backends import PG_URL, postgresql_unavailable

FORMATS = [
    "DAY", "Day", "day", "FMDay", "DY", "Dy", "dy", "MONTH", "Month", "FMmonth", "MON", "Mon",
    "YYYY-MM-DD", "YYYY-MM-DD\"T\"HH24:MI:SS.MS", "yyyy-mm-dd hh24:mi:ss.us", "HH12 AM pm",
    "HH:MI PM", "D ID IW WW W Q DDD", "FMDD FMMM FMHH24 FMMI FMSS FMMS FMUS FMDDD FMWW",
    "IYYY-IW", "YY", "Q\"Q\" YYYY", "MONTH, DD \"at\" HH24", "-- / : ,",
]
INSTANTS = [
    datetime(2024, 1, 1, 0, 0, tzinfo=UTC),
    datetime(2024, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2021, 1, 3, 12, 0, 0, 1000, tzinfo=UTC),  # ISO year 2020, week 53
    datetime(2024, 2, 29, 11, 30, 5, 123456, tzinfo=UTC),
    datetime(2008, 12, 29, 13, 7, 8, tzinfo=UTC),  # ISO week 1 of 2009
    datetime(1999, 7, 4, 7, 0, tzinfo=UTC),
] + [datetime(2024, 3, 1, tzinfo=UTC) + timedelta(days=d, hours=d * 5) for d in range(14)]


def test_known_values() -> None:
    ts = datetime(2024, 5, 6, 13, 5, 6, 789000, tzinfo=UTC)
    assert format_datetime(ts, "DAY") == "MONDAY   "
    assert format_datetime(ts, "FMDay, FMDD Mon YYYY") == "Monday, 6 May 2024"
    assert format_datetime(ts, 'YYYY-MM-DD"T"HH24:MI:SS.MS') == "2024-05-06T13:05:06.789"
    assert format_datetime(ts, "HH12 PM") == "01 PM"


@pytest.mark.parametrize(("fmt", "message"), [
    ("YYYY-MM-DDTHH24", "unexpected 'T' at offset 10"),
    ("TZ", "pattern 'TZ'"),
    ("SSSS", "pattern 'SSSS'"),
    ("DDTH", "unexpected 'T'"),
    ('"open', "unterminated quoted text"),
    ("YYYY\\", "backslash at offset 4"),
    ("FMx", "unexpected 'x' at offset 2"),
    ("", "the format is empty"),
])
def test_rejected_formats(fmt: str, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        parse_format(fmt)


def test_python_equals_postgresql_to_char() -> None:
    reason = postgresql_unavailable()
    if reason:
        pytest.skip(reason)
    import psycopg

    url = make_url(PG_URL)
    with psycopg.connect(host=url.host, port=url.port or 5432, user=url.username,
                         password=url.password, dbname=url.database) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        mismatches = []
        for fmt in FORMATS:
            for ts in INSTANTS:
                row = conn.execute("SELECT to_char(%s::timestamptz AT TIME ZONE 'UTC', %s)",
                                   (ts, fmt)).fetchone()
                assert row is not None
                if row[0] != format_datetime(ts, fmt):
                    mismatches.append((fmt, ts.isoformat(), row[0], format_datetime(ts, fmt)))
    assert mismatches == []
