"""Durations written as Kubernetes tools write them: ``0s``, ``90s``, ``15m``, ``12h``, ``30d``.

`parse_duration` reads what a user types: Go's ``time.ParseDuration`` form (a sequence of
number-and-unit terms such as ``1h30m`` or ``1.5s``) limited to the units ``ms``, ``s``, ``m``,
``h``, plus ``d`` for days; no sign, no bare numbers.

`format_duration` writes an age the way the AGE column of ``kubectl get`` does
(k8s.io/apimachinery ``duration.HumanDuration``): two or three significant figures, such as
``45s``, ``5m10s``, ``3h``, ``2d5h``, ``400d`` or ``2y10d``.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from fractions import Fraction
from typing import Final

ACCEPTED_FORM: Final = "use a number and a unit, like 90s, 15m, 12h or 30d"

_MICROSECONDS_PER_UNIT: Final[dict[str, int]] = {
    "ms": 1_000,
    "s": 1_000_000,
    "m": 60 * 1_000_000,
    "h": 60 * 60 * 1_000_000,
    "d": 24 * 60 * 60 * 1_000_000,
}
_UNIT_NAMES: Final = "ms, s, m, h or d"

# [0-9], not \d: \d also matches non-ASCII digits, which Kubernetes would not accept.
_TERM: Final = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)([^0-9.+-]*)")


def parse_duration(text: str) -> timedelta:
    """Parse a duration such as ``90s``, ``15m``, ``12h``, ``30d`` or ``1h30m``.

    Raises `ValueError` naming the input and the accepted form when `text` is empty, negative,
    has a number without a unit, an unknown unit, or anything else.
    """
    if not text:
        raise _invalid(text, "it is empty")
    if text.startswith("-"):
        raise _invalid(text, "it must not be negative")
    microseconds = Fraction(0)
    position = 0
    while position < len(text):
        term = _TERM.match(text, position)
        if term is None:
            raise _invalid(text)
        number, unit = term.groups()
        if not unit:
            raise _invalid(text, f"{_quote(number)} has no unit")
        if unit not in _MICROSECONDS_PER_UNIT:
            raise _invalid(text, f"unknown unit {_quote(unit)} (units: {_UNIT_NAMES})")
        microseconds += Fraction(number) * _MICROSECONDS_PER_UNIT[unit]
        position = term.end()
    try:
        # timedelta keeps microseconds; anything finer is dropped, as Go drops below nanoseconds.
        return timedelta(microseconds=int(microseconds))
    except OverflowError:
        raise _invalid(text, f"it is longer than {timedelta.max.days}d") from None


def format_duration(td: timedelta) -> str:
    """Format `td` like the AGE column of ``kubectl get``.

    Below two minutes: seconds (``45s``); below ten minutes: minutes and seconds (``5m10s``);
    below three hours: minutes (``15m``); below eight hours: hours and minutes (``3h30m``); below
    two days: hours (``47h``); below eight days: days and hours (``2d5h``); below two years: days
    (``400d``); below eight years: years and days (``2y10d``); then years (``10y``). Each part is
    truncated, never rounded up. Like kubectl, a duration at most one second negative (clock
    skew) reads ``0s``, and a more negative one ``<invalid>``.
    """
    microseconds = td // timedelta(microseconds=1)
    # Truncate toward zero, so that -1.5s counts as -1s and still reads as "now".
    seconds = abs(microseconds) // 1_000_000 * (-1 if microseconds < 0 else 1)
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 2 * 60:
        return f"{seconds}s"

    minutes = seconds // 60
    if minutes < 10:
        return _two_parts(minutes, "m", seconds % 60, "s")
    if minutes < 3 * 60:
        return f"{minutes}m"

    hours = minutes // 60
    if hours < 8:
        return _two_parts(hours, "h", minutes % 60, "m")
    if hours < 2 * 24:
        return f"{hours}h"

    days = hours // 24
    if days < 8:
        return _two_parts(days, "d", hours % 24, "h")
    if days < 2 * 365:
        return f"{days}d"

    years = days // 365
    if years < 8:
        return _two_parts(years, "y", days % 365, "d")
    return f"{years}y"


def _two_parts(major: int, major_unit: str, minor: int, minor_unit: str) -> str:
    if minor == 0:
        return f"{major}{major_unit}"
    return f"{major}{major_unit}{minor}{minor_unit}"


def _invalid(text: str, reason: str | None = None) -> ValueError:
    detail = f"{reason}; {ACCEPTED_FORM}" if reason else ACCEPTED_FORM
    return ValueError(f"invalid duration {_quote(text)}: {detail}")


def _quote(text: str) -> str:
    # JSON string quoting escapes newlines and control characters: the message stays one line.
    return json.dumps(text, ensure_ascii=False)
