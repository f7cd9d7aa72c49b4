"""Where a spoken item lives inside Asterisk's sounds directory (sounds/kinline).

One naming scheme for everything the IVR plays: prompts, number words and
facility names. tools/prompts.py generates the files under the same names.
"""

from __future__ import annotations

import hashlib

from ivr.prompts import LANGUAGES

DEFAULT_LANGUAGE = "en"


def language_or_default(language: str) -> str:
    return language if language in LANGUAGES else DEFAULT_LANGUAGE


def slug(text: str) -> str:
    """A file-name-safe name for any text (number words, facility names)."""
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def word_file(lang: str, token: str) -> str:
    return f"{lang}/words/{slug(token)}"


def facility_file(lang: str, name: str) -> str:
    return f"{lang}/facility/{slug(f'{lang}:{name}')}"


def sound_file(language: str, item: str) -> str:
    """``enter-card`` / ``word:двадцать`` / ``file:<path>`` -> the file Asterisk plays."""
    lang = language_or_default(language)
    if item.startswith("word:"):
        return f"kinline/{word_file(lang, item[5:])}"
    if item.startswith("file:"):
        return item[5:]
    return f"kinline/{lang}/{item}"
