"""Numbers and money in words (ru, fr, en) for spoken prompts.

Numbers are written as words, never digits, because the text goes to the
speech synthesiser. A token is one space-free word ("двадцать",
"quatre-vingt-dix-neuf", "twenty-one", "d'euros"); the text form is the
tokens joined by single spaces.
"""

from ivr.errors import WordsError

MAX_MAJOR = 999_999_999
MINOR_PER_MAJOR = 100
LANGS = ("ru", "fr", "en")
CURRENCIES = ("RUB", "EUR")

_RU_UNITS = (
    "ноль", "один", "два", "три", "четыре", "пять", "шесть", "семь", "восемь",
    "девять", "десять", "одиннадцать", "двенадцать", "тринадцать",
    "четырнадцать", "пятнадцать", "шестнадцать", "семнадцать", "восемнадцать",
    "девятнадцать",
)  # fmt: skip
_RU_TENS = (
    "", "", "двадцать", "тридцать", "сорок", "пятьдесят", "шестьдесят",
    "семьдесят", "восемьдесят", "девяносто",
)  # fmt: skip
_RU_HUNDREDS = (
    "", "сто", "двести", "триста", "четыреста", "пятьсот", "шестьсот", "семьсот",
    "восемьсот", "девятьсот",
)  # fmt: skip
_RU_GENDER = {"f": {"один": "одна", "два": "две"}, "n": {"один": "одно"}, "m": {}}

_FR_UNITS = (
    "zéro", "un", "deux", "trois", "quatre", "cinq", "six", "sept", "huit",
    "neuf", "dix", "onze", "douze", "treize", "quatorze", "quinze", "seize",
)  # fmt: skip
_FR_TENS = ("", "", "vingt", "trente", "quarante", "cinquante", "soixante")

_EN_UNITS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
    "nine", "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen",
    "sixteen", "seventeen", "eighteen", "nineteen",
)  # fmt: skip
_EN_TENS = (
    "", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty",
    "ninety",
)  # fmt: skip

# (major forms, major gender, minor forms, minor gender); ru forms are
# (one, few, many), fr/en forms are (singular, plural).
_Forms = tuple[str, ...]
_UNITS: dict[tuple[str, str], tuple[_Forms, str, _Forms, str]] = {
    ("RUB", "ru"): (("рубль", "рубля", "рублей"), "m", ("копейка", "копейки", "копеек"), "f"),
    ("EUR", "ru"): (("евро", "евро", "евро"), "n", ("цент", "цента", "центов"), "m"),
    ("RUB", "fr"): (("rouble", "roubles"), "m", ("kopeck", "kopecks"), "m"),
    ("EUR", "fr"): (("euro", "euros"), "m", ("centime", "centimes"), "m"),
    ("RUB", "en"): (("rouble", "roubles"), "m", ("kopeck", "kopecks"), "m"),
    ("EUR", "en"): (("euro", "euros"), "m", ("cent", "cents"), "m"),
}
_AND = {"ru": (), "fr": ("et",), "en": ("and",)}


def plural_ru(n: int, one: str, few: str, many: str) -> str:
    """Russian plural form after the number n: 1 рубль, 2 рубля, 5 рублей."""
    n = abs(n)
    if n % 10 == 1 and n % 100 != 11:
        return one
    if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
        return few
    return many


def _ru_triplet(n: int, gender: str) -> list[str]:
    out = [_RU_HUNDREDS[n // 100]] if n >= 100 else []
    rest = n % 100
    if rest >= 20:
        out.append(_RU_TENS[rest // 10])
        rest %= 10
    if rest:
        word = _RU_UNITS[rest]
        out.append(_RU_GENDER[gender].get(word, word))
    return out


def _ru_number(n: int, gender: str) -> list[str]:
    if n == 0:
        return [_RU_UNITS[0]]
    millions, thousands, rest = n // 1_000_000, n // 1000 % 1000, n % 1000
    out: list[str] = []
    if millions:
        out += _ru_triplet(millions, "m")
        out.append(plural_ru(millions, "миллион", "миллиона", "миллионов"))
    if thousands:
        out += _ru_triplet(thousands, "f")
        out.append(plural_ru(thousands, "тысяча", "тысячи", "тысяч"))
    return out + _ru_triplet(rest, gender)


def _fr_below_100(n: int, final: bool) -> list[str]:
    if n < 17:
        return [_FR_UNITS[n]]
    if n < 20:
        return ["dix-" + _FR_UNITS[n - 10]]
    tens, unit = divmod(n, 10)
    if tens == 7 or tens == 9:  # soixante-dix..., quatre-vingt-dix...
        base = "soixante" if tens == 7 else "quatre-vingt"
        rest = n - tens * 10 + 10
        if rest == 11 and tens == 7:
            return [base, "et", "onze"]
        return [base + "-" + _fr_below_100(rest, final)[0]]
    if tens == 8:
        if unit == 0:
            return ["quatre-vingts" if final else "quatre-vingt"]
        return ["quatre-vingt-" + _FR_UNITS[unit]]
    if unit == 0:
        return [_FR_TENS[tens]]
    if unit == 1:
        return [_FR_TENS[tens], "et", "un"]
    return [_FR_TENS[tens] + "-" + _FR_UNITS[unit]]


def _fr_triplet(n: int, final: bool) -> list[str]:
    """1..999; ``final``: no number word (mille) follows, so cents/vingts."""
    hundreds, rest = divmod(n, 100)
    out: list[str] = []
    if hundreds == 1:
        out.append("cent")
    elif hundreds:
        out += [_FR_UNITS[hundreds], "cents" if final and rest == 0 else "cent"]
    return out + (_fr_below_100(rest, final) if rest else [])


def _fr_number(n: int, gender: str) -> list[str]:
    if n == 0:
        return [_FR_UNITS[0]]
    millions, thousands, rest = n // 1_000_000, n // 1000 % 1000, n % 1000
    out: list[str] = []
    if millions:
        out += _fr_triplet(millions, True)
        out.append("million" if millions == 1 else "millions")
    if thousands:
        out += [] if thousands == 1 else _fr_triplet(thousands, False)
        out.append("mille")
    if rest:
        out += _fr_triplet(rest, True)
        if gender == "f" and out[-1].endswith("un"):
            out[-1] += "e"
    return out


def _en_triplet(n: int) -> list[str]:
    hundreds, rest = divmod(n, 100)
    out = [_EN_UNITS[hundreds], "hundred"] if hundreds else []
    if rest >= 20:
        tens, unit = divmod(rest, 10)
        out.append(_EN_TENS[tens] + ("-" + _EN_UNITS[unit] if unit else ""))
    elif rest:
        out.append(_EN_UNITS[rest])
    return out


def _en_number(n: int) -> list[str]:
    if n == 0:
        return [_EN_UNITS[0]]
    out: list[str] = []
    for size, name in ((1_000_000, "million"), (1000, "thousand")):
        if n // size % 1000:
            out += [*_en_triplet(n // size % 1000), name]
    return out + _en_triplet(n % 1000)


def number_tokens(n: int, lang: str, gender: str = "m") -> tuple[str, ...]:
    """0..999_999_999 in words; gender "m"/"f"/"n" agrees the last word
    (ru один/одна/одно, fr un/une; en has no gender)."""
    if type(n) is not int or not 0 <= n <= MAX_MAJOR:
        raise WordsError(f"number out of range: {n!r}")
    if gender not in ("m", "f", "n"):
        raise WordsError(f"unknown gender: {gender!r}")
    if lang == "ru":
        return tuple(_ru_number(n, gender))
    if lang == "fr":
        return tuple(_fr_number(n, gender))
    if lang == "en":
        return tuple(_en_number(n))
    raise WordsError(f"unknown language: {lang!r}")


def _with_unit(n: int, lang: str, forms: tuple[str, ...], gender: str) -> list[str]:
    words = list(number_tokens(n, lang, gender))
    if lang == "ru":
        return [*words, plural_ru(n, forms[0], forms[1], forms[2])]
    if lang == "fr":
        if n >= 1_000_000 and n % 1_000_000 == 0:  # un million d'euros
            vowel = forms[1][0] in "aeiouy"
            return words + (["d'" + forms[1]] if vowel else ["de", forms[1]])
        return [*words, forms[0] if n <= 1 else forms[1]]
    return [*words, forms[0] if n == 1 else forms[1]]


def money_tokens(amount_minor: int, currency: str, lang: str) -> tuple[str, ...]:
    """Amount in words: major units, then minor units if any.

    Zero is "ноль рублей" / "zéro rouble" / "zero roubles"; under one
    major unit only the minor units are said ("пять копеек").
    """
    if (currency, lang) not in _UNITS:
        raise WordsError(f"unsupported currency/language: {currency!r}/{lang!r}")
    if type(amount_minor) is not int or amount_minor < 0:
        raise WordsError(f"bad amount: {amount_minor!r}")
    major, minor = divmod(amount_minor, MINOR_PER_MAJOR)
    if major > MAX_MAJOR:
        raise WordsError(f"amount too large: {amount_minor!r}")
    major_forms, major_gender, minor_forms, minor_gender = _UNITS[currency, lang]
    out: list[str] = []
    if major or not minor:
        out += _with_unit(major, lang, major_forms, major_gender)
    if minor:
        out += list(_AND[lang]) if major else []
        out += _with_unit(minor, lang, minor_forms, minor_gender)
    return tuple(out)


def money_words(amount_minor: int, currency: str, lang: str) -> str:
    """Text form of money_tokens: "двадцать один рубль две копейки"."""
    return " ".join(money_tokens(amount_minor, currency, lang))
