import json

from outbox.text import ELLIPSIS, REPLACEMENT, clean_text, cut_text


def test_nul_becomes_replacement() -> None:
    assert f"a{REPLACEMENT}b" == clean_text("a\x00b")


def test_lone_surrogates_become_replacement() -> None:
    assert f"x{REPLACEMENT}y{REPLACEMENT}" == clean_text("x\ud800y\udfff")


def test_surrogate_pair_joined() -> None:
    assert "😀" == clean_text("\ud83d\ude00")


def test_other_controls_kept() -> None:
    assert "tab\there\x1b" == clean_text("tab\there\x1b")


def test_cleaned_text_encodes() -> None:
    cleaned = clean_text("\ud83d\x00\udc00 ok \ud83d\ude00")
    cleaned.encode("utf-8")
    assert cleaned == json.loads(json.dumps(cleaned, ensure_ascii=False))


def test_cut_keeps_short_text() -> None:
    assert "abc" == cut_text("abc", 3)


def test_cut_ends_with_ellipsis_within_limit() -> None:
    cut = cut_text("😀" * 1200, 1000)
    assert 1000 == len(cut)
    assert cut.endswith(ELLIPSIS)
    assert "😀" * 999 == cut[:-1]
