"""PQL's ``to_string(timestamp, format)``: PostgreSQL ``to_char`` patterns, in Python too.

On PostgreSQL the query runs ``to_char`` itself; on SQLite the same text is produced by
:func:`format_datetime`, registered as an SQL function. So that the two never disagree, a
format is tokenised with PostgreSQL's full keyword table (longest match first, as
``to_char`` does) and rejected if it uses a keyword this module does not implement, or a
bare letter that ``to_char`` would copy literally: quote literal text (``"T"``).
"""

from __future__ import annotations

import functools
from datetime import datetime, timedelta
from typing import NamedTuple

#: Every template keyword of PostgreSQL's ``to_char`` (formatting.c), used to tokenise.
_PG_KEYWORDS = (
    "A.D.", "A.M.", "AD", "AM", "B.C.", "BC", "CC", "DAY", "DDD", "DD", "DY", "Day", "Dy",
    "D", "FF1", "FF2", "FF3", "FF4", "FF5", "FF6", "FX", "HH24", "HH12", "HH", "IDDD", "ID",
    "IW", "IYYY", "IYY", "IY", "I", "J", "MI", "MM", "MONTH", "MON", "MS", "Month", "Mon",
    "OF", "P.M.", "PM", "Q", "RM", "SSSSS", "SSSS", "SS", "TZH", "TZM", "TZ", "US", "WW", "W",
    "Y,YYY", "YYYY", "YYY", "YY", "Y", "a.d.", "a.m.", "ad", "am", "b.c.", "bc", "cc", "day",
    "ddd", "dd", "dy", "d", "ff1", "ff2", "ff3", "ff4", "ff5", "ff6", "fx", "hh24", "hh12",
    "hh", "iddd", "id", "iw", "iyyy", "iyy", "iy", "i", "j", "mi", "mm", "month", "mon", "ms",
    "of", "p.m.", "pm", "q", "rm", "sssss", "ssss", "ss", "tzh", "tzm", "tz", "us", "ww", "w",
    "y,yyy", "yyyy", "yyy", "yy", "y",
)
_BY_LENGTH = sorted(_PG_KEYWORDS, key=len, reverse=True)

#: The keywords implemented here (lower-case numeric forms behave like upper-case ones).
SUPPORTED = (
    "YYYY", "YY", "IYYY", "MM", "DD", "DDD", "D", "ID", "IW", "WW", "W", "Q", "HH24",
    "HH12", "HH", "MI", "SS", "MS", "US", "AM", "PM", "am", "pm", "DAY", "Day", "day", "DY",
    "Dy", "dy", "MONTH", "Month", "month", "MON", "Mon", "mon",
)
#: Lower-case spellings of numeric keywords, which ``to_char`` treats as the upper-case ones.
_NUMERIC_LOWER = {
    k.lower(): k
    for k in ("YYYY", "YY", "IYYY", "MM", "DD", "DDD", "D", "ID", "IW", "WW", "W", "Q",
              "HH24", "HH12", "HH", "MI", "SS", "MS", "US")
}

_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")


class FormatError(ValueError):
    """A ``to_string`` format uses something this implementation does not render."""


class Token(NamedTuple):
    #: A supported keyword, or None for literal text.
    keyword: str | None
    text: str
    fill_mode: bool = False


@functools.lru_cache(maxsize=128)
def parse_format(fmt: str) -> tuple[Token, ...]:
    """Tokenise ``fmt`` as ``to_char`` would; raises :class:`FormatError` naming the problem."""
    if not fmt:
        raise FormatError("the format is empty (PostgreSQL's to_char gives NULL for it)")
    tokens: list[Token] = []
    literal: list[str] = []
    i = 0

    def flush() -> None:
        if literal:
            tokens.append(Token(None, "".join(literal)))
            literal.clear()

    while i < len(fmt):
        char = fmt[i]
        if char == '"':
            end = i + 1
            while end < len(fmt) and fmt[end] != '"':
                if fmt[end] == "\\" and end + 1 < len(fmt):
                    end += 1
                literal.append(fmt[end])
                end += 1
            if end >= len(fmt):
                raise FormatError(f"unterminated quoted text at offset {i} of {fmt!r}")
            i = end + 1
            continue
        if char == "\\":
            raise FormatError(
                f"backslash at offset {i} of {fmt!r}: put literal text in double quotes"
            )
        fill = False
        if fmt.startswith("FM", i):
            fill = True
            i += 2
        keyword = next((k for k in _BY_LENGTH if fmt.startswith(k, i)), None)
        if keyword is None:
            if fill or char.isalpha():
                where = fmt[i:i + 1] or "end of format"
                raise FormatError(
                    f"unexpected {where!r} at offset {i} of {fmt!r}: letters must be one of "
                    f"the patterns {', '.join(SUPPORTED)}, or quoted (\"text\")"
                )
            literal.append(char)
            i += 1
            continue
        canonical = _NUMERIC_LOWER.get(keyword, keyword)
        if canonical not in SUPPORTED:
            raise FormatError(
                f"pattern {keyword!r} in {fmt!r} is not supported; supported patterns: "
                f"{', '.join(SUPPORTED)}"
            )
        flush()
        tokens.append(Token(canonical, keyword, fill))
        i += len(keyword)
    flush()
    return tuple(tokens)


def _number(value: int, width: int, fill: bool) -> str:
    return str(value) if fill else f"{value:0{width}d}"


def _name(name: str, style: str, fill: bool, pad: int) -> str:
    if style.isupper():
        name = name.upper()
    elif style.islower():
        name = name.lower()
    return name if fill else name.ljust(pad)


def _render(token: Token, ts: datetime) -> str:
    key, fill = token.keyword, token.fill_mode
    iso_year, iso_week, iso_day = ts.isocalendar()
    hour12 = ts.hour % 12 or 12
    match key:
        case "YYYY":
            return _number(ts.year, 4, fill)
        case "YY":
            return _number(ts.year % 100, 2, fill)
        case "IYYY":
            return _number(iso_year, 4, fill)
        case "MM":
            return _number(ts.month, 2, fill)
        case "DD":
            return _number(ts.day, 2, fill)
        case "DDD":
            return _number(ts.timetuple().tm_yday, 3, fill)
        case "D":
            return str(iso_day % 7 + 1)
        case "ID":
            return str(iso_day)
        case "IW":
            return _number(iso_week, 2, fill)
        case "WW":
            return _number((ts.timetuple().tm_yday - 1) // 7 + 1, 2, fill)
        case "W":
            return str((ts.day - 1) // 7 + 1)
        case "Q":
            return str((ts.month - 1) // 3 + 1)
        case "HH24":
            return _number(ts.hour, 2, fill)
        case "HH12" | "HH":
            return _number(hour12, 2, fill)
        case "MI":
            return _number(ts.minute, 2, fill)
        case "SS":
            return _number(ts.second, 2, fill)
        case "MS":  # to_char pads these even in fill mode
            return _number(ts.microsecond // 1000, 3, False)
        case "US":
            return _number(ts.microsecond, 6, False)
        case "AM" | "PM":
            return "AM" if ts.hour < 12 else "PM"
        case "am" | "pm":
            return "am" if ts.hour < 12 else "pm"
        case "DAY" | "Day" | "day":
            return _name(_DAYS[ts.weekday()], token.text, fill, 9)
        case "DY" | "Dy" | "dy":
            return _name(_DAYS[ts.weekday()][:3], token.text, True, 3)
        case "MONTH" | "Month" | "month":
            return _name(_MONTHS[ts.month - 1], token.text, fill, 9)
        case "MON" | "Mon" | "mon":
            return _name(_MONTHS[ts.month - 1][:3], token.text, True, 3)
    raise FormatError(f"pattern {token.text!r} has no renderer")  # pragma: no cover


def format_datetime(ts: datetime, fmt: str) -> str:
    """``to_char(ts, fmt)`` for a UTC timestamp (naive values are taken as UTC)."""
    if ts.tzinfo is not None:
        offset = ts.utcoffset() or timedelta(0)
        ts = (ts - offset).replace(tzinfo=None)
    return "".join(
        token.text if token.keyword is None else _render(token, ts)
        for token in parse_format(fmt)
    )


_TIME_OF_DAY = frozenset({"HH24", "HH12", "HH", "MI", "SS", "MS", "US", "AM", "PM", "am",
                          "pm"})


@functools.lru_cache(maxsize=64)
def _date_only(fmt: str) -> bool:
    return not any(t.keyword in _TIME_OF_DAY for t in parse_format(fmt))


@functools.lru_cache(maxsize=4096)
def _format_text(stored: str, fmt: str) -> str | None:
    try:
        ts = datetime.fromisoformat(stored)
    except ValueError:
        return None
    return format_datetime(ts, fmt)


def to_char_text(stored: str, fmt: str) -> str | None:
    """The SQLite side: ``stored`` is SQLAlchemy's text form of a UTC timestamp. Formats
    without a time of day depend on the date alone, which repeats a lot: cached by it."""
    if _date_only(fmt):
        return _format_text(stored[:10], fmt)
    return _format_text(stored, fmt)
