"""Cleaning and cutting of user text so that Postgres and JSON can always carry it."""

from __future__ import annotations

REPLACEMENT = "\ufffd"
ELLIPSIS = "…"


def clean_text(value: str) -> str:
    """Return `value` as valid Unicode text: NUL and lone surrogates become U+FFFD.

    A surrogate pair written as two code points is joined into the one character it
    encodes; other control characters are kept.
    """
    if value.isascii():
        return value.replace("\x00", REPLACEMENT)
    # UTF-16 with surrogatepass joins valid pairs; decoding with "replace" turns each
    # lone surrogate into U+FFFD.
    joined = value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return joined.replace("\x00", REPLACEMENT)


def cut_text(value: str, max_code_points: int) -> str:
    """Return `value` cut to at most `max_code_points`, ending with "…" when it was cut.

    Call it on cleaned text: every code point is then a whole character, so no surrogate
    pair can be split.
    """
    if len(value) <= max_code_points:
        return value
    return value[: max_code_points - 1] + ELLIPSIS
