"""What the IVR says: prompt names, and numbers as word tokens.

A spoken item is a string: a prompt name ("enter-card"), a word token
("word:двадцать"), or a facility's name ("facility:demo"). The adapter maps
them to sound files; tools/prompts.py generates every one of them.
"""

from __future__ import annotations

from collections.abc import Iterable

from ivr.words import money_tokens, number_tokens, plural_ru

LANGUAGES = ("ru", "fr", "en")

# Every prompt the IVR can play; each exists in prompts/<lang>.toml.
APOLOGY = "apology"
WELCOME = "welcome"
ENTER_DIGITS = "enter-digits"
THANK_YOU = "thank-you"
ENTER_CARD = "enter-card"
ENTER_PIN = "enter-pin"
LOGIN_FAILED = "login-failed"
TOO_MANY_TRIES = "too-many-tries"
CARD_LOCKED = "card-locked"
CARD_BLOCKED = "card-blocked"
INMATE_SUSPENDED = "inmate-suspended"
PERMISSION_MISSING = "permission-missing"
OUTSIDE_SCHEDULE = "outside-schedule"
SCHEDULE_CLOSING = "schedule-closing"
TERMINAL_WAIT = "terminal-wait"
CARD_IN_USE = "card-in-use"
NO_FUNDS = "no-funds"
YOUR_BALANCE = "your-balance"
ENTER_NUMBER = "enter-number"
NUMBER_INVALID = "number-invalid"
NUMBER_INCOMPLETE = "number-incomplete"
SERVICE_UNAVAILABLE = "service-unavailable"
NUMBER_NOT_ALLOWED = "number-not-allowed"
NO_RATE = "no-rate"
CALL_MAY_LAST = "call-may-last"
CALLEE_INTRO = "callee-intro"
CALL_RECORDED = "call-recorded"
LIMIT_WARNING = "limit-warning"
LIMIT_WARNING_SOON = "limit-warning-soon"
BUSY = "busy"
NO_ANSWER = "no-answer"
UNREACHABLE = "unreachable"
DIAL_ANOTHER = "dial-another"
NO_INPUT = "no-input"
GOODBYE = "goodbye"
RELATIVE_NO_ACCOUNT = "relative-no-account"
RELATIVE_NOT_ENABLED = "relative-not-enabled"
RELATIVE_NO_FUNDS = "relative-no-funds"
RELATIVE_CAP = "relative-cap"
RELATIVE_BLOCKED = "relative-blocked"
ONLY_RELATIVE_PAID = "only-relative-paid"
CALL_DECLINED = "call-declined"
ACCEPT_PAID = "accept-paid"
PER_MINUTE = "per-minute"
ACCEPT_MENU = "accept-menu"
ACCEPT_DECLINED = "accept-declined"
ACCEPT_BLOCKED = "accept-blocked"
NAME_RECORD = "name-record"
NAME_PLAYBACK = "name-playback"
NAME_CONFIRM = "name-confirm"
NAME_SAVED = "name-saved"
APP_NONE = "app-none"
APP_CONNECTING = "app-connecting"
APP_UNREACHABLE = "app-unreachable"
# The free audio test call to the app (played by dialplan/app_test.conf).
APP_TEST_INTRO = "app-test-intro"
APP_TEST_GOODBYE = "app-test-goodbye"
# Overload control (ivr/overload.py): a new call refused at once.
LINES_BUSY = "lines-busy"

ALL = (
    APOLOGY, WELCOME, ENTER_DIGITS, THANK_YOU, ENTER_CARD, ENTER_PIN, LOGIN_FAILED,
    TOO_MANY_TRIES, CARD_LOCKED, CARD_BLOCKED, INMATE_SUSPENDED, PERMISSION_MISSING,
    OUTSIDE_SCHEDULE, SCHEDULE_CLOSING, TERMINAL_WAIT, CARD_IN_USE, NO_FUNDS, YOUR_BALANCE, ENTER_NUMBER,
    NUMBER_INVALID,
    NUMBER_INCOMPLETE, SERVICE_UNAVAILABLE, NUMBER_NOT_ALLOWED, NO_RATE,
    CALL_MAY_LAST, CALLEE_INTRO, CALL_RECORDED, LIMIT_WARNING, LIMIT_WARNING_SOON, BUSY, NO_ANSWER, UNREACHABLE,
    DIAL_ANOTHER, NO_INPUT, GOODBYE,
    RELATIVE_NO_ACCOUNT, RELATIVE_NOT_ENABLED, RELATIVE_NO_FUNDS, RELATIVE_CAP, RELATIVE_BLOCKED,
    ONLY_RELATIVE_PAID, CALL_DECLINED, ACCEPT_PAID, PER_MINUTE, ACCEPT_MENU, ACCEPT_DECLINED, ACCEPT_BLOCKED,
    NAME_RECORD, NAME_PLAYBACK, NAME_CONFIRM, NAME_SAVED,
    APP_NONE, APP_CONNECTING, APP_UNREACHABLE, APP_TEST_INTRO, APP_TEST_GOODBYE, LINES_BUSY,
)  # fmt: skip

_MINUTE_WORDS = {"ru": ("минута", "минуты", "минут"), "fr": ("minute", "minutes"), "en": ("minute", "minutes")}
_SECOND_WORDS = {"ru": ("секунда", "секунды", "секунд"), "fr": ("seconde", "secondes"), "en": ("second", "seconds")}


def words(tokens: Iterable[str]) -> list[str]:
    return [f"word:{t}" for t in tokens]


def money(amount_minor: int, currency: str, lang: str) -> list[str]:
    return words(money_tokens(amount_minor, currency, lang))


def _unit_word(forms: tuple[str, ...], n: int, lang: str) -> str:
    if lang == "ru":
        return plural_ru(n, *forms)
    return forms[0] if n <= 1 else forms[1]


def minute_word(n: int, lang: str) -> str:
    return _unit_word(_MINUTE_WORDS[lang], n, lang)


def second_word(n: int, lang: str) -> str:
    return _unit_word(_SECOND_WORDS[lang], n, lang)


def minutes(n: int, lang: str) -> list[str]:
    """"15 minutes" in words (minute is feminine in ru and fr)."""
    return words((*number_tokens(n, lang, "f"), minute_word(n, lang)))


def seconds(n: int, lang: str) -> list[str]:
    """"40 seconds" in words (second is feminine in ru and fr)."""
    return words((*number_tokens(n, lang, "f"), second_word(n, lang)))


def duration(total_s: int, lang: str) -> list[str]:
    """A call's length, exactly: "2 minutes", "40 seconds", "7 minutes 17 seconds"."""
    mins, secs = divmod(max(0, total_s), 60)
    if mins == 0:
        return seconds(secs, lang)
    return minutes(mins, lang) + (seconds(secs, lang) if secs else [])


def vocabulary(lang: str) -> set[str]:
    """Every word token money() and duration() can produce in ``lang``: each
    0..999 group in the units, thousands and millions place, final or not."""
    found: set[str] = set()
    majors = {0, 1_000_000_000 - 1}
    for n in range(1000):
        majors.update({n, n * 1000, n * 1000 + 1, n * 1_000_000, n * 1_000_000 + 1, n * 1_000_000 + 1000})
    for currency in ("RUB", "EUR"):
        for major in majors:
            found.update(money_tokens(major * 100, currency, lang))
        for minor in range(0, 100):
            found.update(money_tokens(100 + minor, currency, lang))
            found.update(money_tokens(minor, currency, lang))
    for n in range(0, 121):
        found.update(number_tokens(n, lang, "f"))
        found.add(minute_word(n, lang))
        found.add(second_word(n, lang))
    return found
