"""The one rule that decides whether a supplier record is valid: the only place that does.

A record is valid if and only if :func:`judge` gives it reason ``""``. Every loader
(``copy``, ``executemany``, ``pandas``, ``orm``) stages exactly the records this rule
accepts, as the strings it accepted; PostgreSQL's casts never decide. The rule only
accepts text that the server's ``integer``, ``numeric(12,2)`` and ``timestamptz`` inputs
read back as the same value, so a cast can no longer round, reinterpret or refuse
(``12.345`` is not silently stored as 12.35; ``now``, ``epoch``, ``+12`` or ``1_000`` never
reach the server).

The field rules, checked in this order (the first one broken is the reason):

=========================  ==============================================================
``oversized_field``        a field longer than :data:`MAX_FIELD_BYTES` bytes (UTF-8)
``non_numeric_quantity``   quantity is not ``-?[0-9]{1,9}``: no sign ``+``, no spaces, no
                           ``1_000``, no ``1e3``, no decimals (an int4 always holds it)
``non_numeric_price``      unit_price is not ``-?[0-9]{1,10}(.[0-9]+)?`` (no ``1e3``, no
                           spaces, no thousands separators)
``price_scale``            unit_price has more than two decimals (``12.345``): the column is
                           numeric(12,2) and rounding would change the supplier's number
``timestamp_without_zone`` ts is a well-formed ISO 8601 time with no zone: the instant is
                           ambiguous, so it is refused rather than taken as UTC
``bad_timestamp``          ts is anything else that is not ``YYYY-MM-DD[T ]hh:mm:ss[.ffffff]``
                           with ``Z`` or ``+hh:mm``/``+hhmm``/``+hh`` naming a real calendar
                           day and time (no ``now``, ``epoch``, 30 February, 24:00 or :60)
``missing_field``          a column other than ``note`` is empty
=========================  ==============================================================

Structural reasons (``wrong_column_count``, ``bad_quoting``, ``embedded_newline``,
``nul_byte``, ``invalid_utf8``/``invalid_encoding``) are decided per line before the fields
exist, in :mod:`harness.workloads.csvvalidate`.

The rule runs on whole columns at once with pyarrow compute kernels (C, GIL released): no
valid record goes through Python. Only rejected records do, to write their detail.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from harness.workloads.csvgen import COLUMNS, MAX_FIELD_BYTES

QUANTITY = r"^-?[0-9]{1,9}$"
PRICE_NUMBER = r"^-?[0-9]{1,10}(?:\.[0-9]+)?$"
PRICE = r"^-?[0-9]{1,10}(?:\.[0-9]{1,2})?$"
# A real calendar day as a pattern (one regex kernel instead of a parse and a print-back):
# days 01-28 of any month, 29-30 of any month but February, 31 of the long months, and
# 29 February of leap years (divisible by 4, centuries only when divisible by 400).
# Years 0002-9998: an instant of year 1 or 9999 can leave years 1-9999 once taken to UTC
# (0001-01-01T00:00+05:00), which COPY stores as BC or year 10000 and Python's datetime (the
# other loaders) cannot hold at all: the file would load with one loader and fail with another.
_YEAR = r"(?:[1-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8]|0[1-9][0-9]{2}|00[1-9][0-9]|000[2-9])"
_LEAP = r"(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)"
_DAY = (rf"(?:{_YEAR}-(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])|(?:0[13-9]|1[0-2])-"
        rf"(?:29|30)|(?:0[13578]|1[02])-31)|{_LEAP}-02-29)")
_DATE_TIME = (rf"{_DAY}[T ](?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
              r"(?:\.[0-9]{1,6})?")
# Zone offsets up to 15:59, PostgreSQL's limit (+16:00 fails COPY, and the file with it).
TIMESTAMP = rf"^{_DATE_TIME}(?:Z|[+-](?:0[0-9]|1[0-5])(?::?[0-5][0-9])?)$"
TIMESTAMP_NO_ZONE = rf"^{_DATE_TIME}$"
REQUIRED = tuple(c for c in COLUMNS if c != "note")

# Reason codes in the order they are checked; 0 is "valid".
FIELD_REASONS = ("", "oversized_field", "non_numeric_quantity", "non_numeric_price",
                 "price_scale", "timestamp_without_zone", "bad_timestamp", "missing_field")


def _matches(column: pa.Array, pattern: str) -> np.ndarray:
    return pc.match_substring_regex(column, pattern).to_numpy(zero_copy_only=False)


def _failures(table: pa.Table, longest: int) -> list[np.ndarray]:
    """One boolean array per field reason (True = the row breaks it), in reason order.
    The refinements (which kind of bad price or time) run only when some value failed,
    and the length kernels only when a line is long enough to hold an oversized field."""
    n = table.num_rows
    none = np.zeros(n, dtype=bool)
    oversized = none
    if longest > MAX_FIELD_BYTES:
        oversized = np.logical_or.reduce([
            pc.binary_length(table[c]).to_numpy(zero_copy_only=False) > MAX_FIELD_BYTES
            for c in COLUMNS])
    price, ts = (table[c].combine_chunks() for c in ("unit_price", "ts"))
    bad_price = ~_matches(price, PRICE)
    if bad_price.any():
        not_number = ~_matches(price, PRICE_NUMBER)
        bad_price, scale = not_number, bad_price & ~not_number
    else:
        scale = none
    bad_ts = ~_matches(ts, TIMESTAMP)
    no_zone = _matches(ts, TIMESTAMP_NO_ZONE) if bad_ts.any() else none
    missing = np.logical_or.reduce([pc.equal(table[c], "").to_numpy(zero_copy_only=False)
                                    for c in REQUIRED])
    return [oversized, ~_matches(table["quantity"].combine_chunks(), QUANTITY), bad_price,
            scale, no_zone, bad_ts, missing]


def judge(table: pa.Table, longest: int = MAX_FIELD_BYTES + 1) -> np.ndarray:
    """The reason code (index into :data:`FIELD_REASONS`) of every row of ``table``, a
    table of string columns named :data:`COLUMNS`; 0 where the row is valid.
    ``longest`` is the longest raw line, when the caller knows it (a shortcut only).

    A row's code depends on that row's fields alone (column kernels, no state), so a
    record's verdict never depends on its neighbours.
    """
    codes = np.zeros(table.num_rows, dtype=np.int8)
    if not table.num_rows:
        return codes
    # Later rules first, so the earliest broken rule is the one left standing.
    for code, failed in reversed(list(enumerate(_failures(table, longest), 1))):
        codes[failed] = code
    return codes


# reason -> (column, what is wrong with its value), for the quarantine's detail
_DETAILS = {"non_numeric_quantity": ("quantity", "is not a plain integer"),
            "non_numeric_price": ("unit_price", "is not a plain decimal number"),
            "price_scale": ("unit_price", "has more than 2 decimals"),
            "timestamp_without_zone": ("ts", "has no zone (Z or +hh:mm): the instant is ambiguous"),
            "bad_timestamp": ("ts", "is not an ISO 8601 time with a zone on a real day")}


def detail(reason: str, fields: dict[str, str]) -> str:
    """A human sentence for a rejected record (called for rejected rows only)."""
    if reason in _DETAILS:
        column, wrong = _DETAILS[reason]
        return f"{column} {fields[column][:40]!r} {wrong}"
    if reason == "oversized_field":
        name, size = max(((c, len(fields[c].encode())) for c in COLUMNS), key=lambda kv: kv[1])
        return f"{name} has {size} bytes (max {MAX_FIELD_BYTES})"
    if reason == "missing_field":
        empty = [c for c in REQUIRED if not fields[c]]
        return f"{', '.join(empty)} {'is' if len(empty) == 1 else 'are'} empty"
    return reason
