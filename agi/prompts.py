"""Where the generated prompts live inside Asterisk's sounds directory."""

from __future__ import annotations

LANGUAGES = ("ru", "fr", "en")
DEFAULT_LANGUAGE = "en"


def prompt(language: str, name: str) -> str:
    """Sound file name for ``name`` in ``language`` (unknown languages -> English)."""
    lang = language if language in LANGUAGES else DEFAULT_LANGUAGE
    return f"kinline/{lang}/{name}"
