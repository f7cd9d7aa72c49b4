"""Every prompt the IVR can play exists in ru, fr and en; every number word too."""

from __future__ import annotations

import tomllib

from hypothesis import given
from hypothesis import strategies as st

from ivr import prompts as p
from tools.config import REPO


def _texts(lang: str) -> dict[str, str]:
    with (REPO / "prompts" / f"{lang}.toml").open("rb") as fh:
        return tomllib.load(fh)


def test_every_prompt_in_every_language() -> None:
    for lang in p.LANGUAGES:
        texts = _texts(lang)
        assert set(p.ALL) <= set(texts), f"{lang}: missing {sorted(set(p.ALL) - set(texts))}"
        assert all(t.strip() for t in texts.values())


def test_prompt_names_used_by_the_code_are_listed() -> None:
    used = {value for name, value in vars(p).items() if name.isupper() and isinstance(value, str)
            and name not in ("LANGUAGES",)}
    assert used <= set(p.ALL)


@given(st.integers(min_value=0, max_value=999_999_999_99), st.sampled_from(["RUB", "EUR"]),
       st.sampled_from(["ru", "fr", "en"]))
def test_money_words_are_all_in_the_generated_vocabulary(amount: int, currency: str, lang: str) -> None:
    vocabulary = _VOCAB[lang]
    for item in p.money(amount, currency, lang):
        assert item.removeprefix("word:") in vocabulary


@given(st.integers(min_value=1, max_value=120), st.sampled_from(["ru", "fr", "en"]))
def test_minutes_words_are_in_the_vocabulary(n: int, lang: str) -> None:
    for item in p.minutes(n, lang):
        assert item.removeprefix("word:") in _VOCAB[lang]


def test_minutes_grammar() -> None:
    assert p.minutes(1, "ru") == ["word:одна", "word:минута"]
    assert p.minutes(2, "ru") == ["word:две", "word:минуты"]
    assert p.minutes(15, "ru") == ["word:пятнадцать", "word:минут"]
    assert p.minutes(21, "fr") == ["word:vingt", "word:et", "word:une", "word:minutes"]
    assert p.minutes(1, "en") == ["word:one", "word:minute"]


_VOCAB = {lang: p.vocabulary(lang) for lang in p.LANGUAGES}


@given(st.integers(min_value=1, max_value=7200), st.sampled_from(["ru", "fr", "en"]))
def test_durations_are_in_the_vocabulary(total_s: int, lang: str) -> None:
    for item in p.duration(total_s, lang):
        assert item.removeprefix("word:") in _VOCAB[lang]


def test_duration_says_seconds_under_a_minute() -> None:
    assert p.duration(45, "ru") == ["word:сорок", "word:пять", "word:секунд"]
    assert p.duration(1, "ru") == ["word:одна", "word:секунда"]
    assert p.duration(21, "fr") == ["word:vingt", "word:et", "word:une", "word:secondes"]
    assert p.duration(1, "en") == ["word:one", "word:second"]
    assert p.duration(120, "ru") == ["word:две", "word:минуты"]
    assert p.duration(62, "ru") == ["word:одна", "word:минута", "word:две", "word:секунды"]
    assert p.duration(900, "en") == ["word:fifteen", "word:minutes"]
