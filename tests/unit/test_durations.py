"""Unit tests of `mtv_register.durations`: parsing what users type, formatting like kubectl."""

from __future__ import annotations

from datetime import timedelta

import pytest

from mtv_register.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0s", timedelta(0)),
        ("90s", timedelta(seconds=90)),
        ("1.5s", timedelta(seconds=1.5)),
        (".5s", timedelta(milliseconds=500)),
        ("500ms", timedelta(milliseconds=500)),
        ("15m", timedelta(minutes=15)),
        ("12h", timedelta(hours=12)),
        ("1.5h", timedelta(minutes=90)),
        ("30d", timedelta(days=30)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("2d12h", timedelta(days=2, hours=12)),
        ("1m0.25s", timedelta(minutes=1, milliseconds=250)),
    ],
)
def test_parse_duration_reads_kubernetes_durations_and_days(text, expected):
    assert parse_duration(text) == expected


def test_parse_duration_keeps_exact_decimals():
    # 0.1 is not exact as a float; the parse must not drift by a microsecond.
    assert parse_duration("0.1s") == timedelta(microseconds=100_000)
    assert parse_duration("0.3h") == timedelta(minutes=18)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "it is empty"),
        ("abc", None),
        ("-5m", "it must not be negative"),
        ("+5m", None),
        ("10", '"10" has no unit'),
        ("1h30", '"30" has no unit'),
        ("5w", 'unknown unit "w"'),
        ("5M", 'unknown unit "M"'),
        ("5 m", 'unknown unit " m"'),
        (" 5m", None),
        ("m", None),
        ("1h-30m", None),
        ("999999999999d", "it is longer than"),
    ],
)
def test_parse_duration_rejects_bad_input_naming_it_and_the_accepted_form(text, reason):
    with pytest.raises(ValueError) as caught:
        parse_duration(text)
    message = str(caught.value)
    assert message.startswith(f'invalid duration "{text}": ')
    assert message.endswith("use a number and a unit, like 90s, 15m, 12h or 30d")
    if reason is not None:
        assert reason in message


def test_parse_duration_error_for_garbage_is_exactly_the_documented_message():
    with pytest.raises(ValueError) as caught:
        parse_duration("abc")
    assert str(caught.value) == (
        'invalid duration "abc": use a number and a unit, like 90s, 15m, 12h or 30d'
    )


def test_parse_duration_error_stays_on_one_line_for_control_characters():
    with pytest.raises(ValueError) as caught:
        parse_duration("5m\n")
    assert "\n" not in str(caught.value)
    assert '"5m\\n"' in str(caught.value)


@pytest.mark.parametrize(
    ("td", "expected"),
    [
        (timedelta(0), "0s"),
        (timedelta(seconds=1.9), "1s"),
        (timedelta(seconds=45), "45s"),
        (timedelta(seconds=119), "119s"),
        (timedelta(minutes=2), "2m"),
        (timedelta(minutes=5, seconds=10), "5m10s"),
        (timedelta(minutes=5, seconds=10.9), "5m10s"),
        (timedelta(minutes=9, seconds=59), "9m59s"),
        (timedelta(minutes=10, seconds=30), "10m"),
        (timedelta(minutes=15), "15m"),
        (timedelta(minutes=179, seconds=59), "179m"),
        (timedelta(hours=3), "3h"),
        (timedelta(hours=3, minutes=30), "3h30m"),
        (timedelta(hours=7, minutes=59), "7h59m"),
        (timedelta(hours=8, minutes=30), "8h"),
        (timedelta(hours=47, minutes=59), "47h"),
        (timedelta(days=2), "2d"),
        (timedelta(days=2, hours=5), "2d5h"),
        (timedelta(days=7, hours=23), "7d23h"),
        (timedelta(days=8, hours=5), "8d"),
        (timedelta(days=30), "30d"),
        (timedelta(days=400), "400d"),
        (timedelta(days=729), "729d"),
        (timedelta(days=730), "2y"),
        (timedelta(days=740), "2y10d"),
        (timedelta(days=365 * 8 - 1), "7y364d"),
        (timedelta(days=365 * 10 + 5), "10y"),
    ],
)
def test_format_duration_writes_like_kubectl_age_column(td, expected):
    assert format_duration(td) == expected


@pytest.mark.parametrize(
    ("td", "expected"),
    [
        (timedelta(seconds=-0.5), "0s"),
        (timedelta(seconds=-1), "0s"),
        (timedelta(seconds=-1.9), "0s"),
        (timedelta(seconds=-2), "<invalid>"),
        (timedelta(days=-3), "<invalid>"),
    ],
)
def test_format_duration_tolerates_one_second_of_clock_skew_like_kubectl(td, expected):
    assert format_duration(td) == expected


@pytest.mark.parametrize("text", ["0s", "45s", "15m", "3h", "2d5h", "30d", "400d"])
def test_format_duration_reads_back_what_parse_duration_reads(text):
    assert format_duration(parse_duration(text)) == text
