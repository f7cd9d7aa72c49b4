"""Money and numbers in words, ru/fr/en, RUB/EUR."""

import pytest

from ivr.errors import KinlineError, WordsError
from ivr.words import money_tokens, money_words, number_tokens, plural_ru

EXACT = [
    # Russian, roubles (masculine) and kopecks (feminine)
    (0, "RUB", "ru", "ноль рублей"),
    (100, "RUB", "ru", "один рубль"),
    (200, "RUB", "ru", "два рубля"),
    (500, "RUB", "ru", "пять рублей"),
    (1100, "RUB", "ru", "одиннадцать рублей"),
    (2100, "RUB", "ru", "двадцать один рубль"),
    (1, "RUB", "ru", "одна копейка"),
    (2, "RUB", "ru", "две копейки"),
    (5, "RUB", "ru", "пять копеек"),
    (11, "RUB", "ru", "одиннадцать копеек"),
    (121, "RUB", "ru", "один рубль двадцать одна копейка"),
    (105, "RUB", "ru", "один рубль пять копеек"),
    (22222, "RUB", "ru", "двести двадцать два рубля двадцать две копейки"),
    (100000, "RUB", "ru", "одна тысяча рублей"),
    (200000, "RUB", "ru", "две тысячи рублей"),
    (500000, "RUB", "ru", "пять тысяч рублей"),
    (2100000, "RUB", "ru", "двадцать одна тысяча рублей"),
    (1250000, "RUB", "ru", "двенадцать тысяч пятьсот рублей"),
    (100000000, "RUB", "ru", "один миллион рублей"),
    (200000000, "RUB", "ru", "два миллиона рублей"),
    (500000000, "RUB", "ru", "пять миллионов рублей"),
    (100100100, "RUB", "ru", "один миллион одна тысяча один рубль"),
    (
        99999999999,
        "RUB",
        "ru",
        "девятьсот девяносто девять миллионов девятьсот девяносто девять тысяч "
        "девятьсот девяносто девять рублей девяносто девять копеек",
    ),
    (100, "EUR", "ru", "одно евро"),
    (2101, "EUR", "ru", "двадцать одно евро один цент"),
    (3, "EUR", "ru", "три цента"),
    # French
    (0, "RUB", "fr", "zéro rouble"),
    (0, "EUR", "fr", "zéro euro"),
    (100, "RUB", "fr", "un rouble"),
    (2100, "RUB", "fr", "vingt et un roubles"),
    (2, "RUB", "fr", "deux kopecks"),
    (100, "EUR", "fr", "un euro"),
    (200, "EUR", "fr", "deux euros"),
    (1, "EUR", "fr", "un centime"),
    (99, "EUR", "fr", "quatre-vingt-dix-neuf centimes"),
    (150, "EUR", "fr", "un euro et cinquante centimes"),
    (7100, "EUR", "fr", "soixante et onze euros"),
    (7200, "EUR", "fr", "soixante-douze euros"),
    (8000, "EUR", "fr", "quatre-vingts euros"),
    (8100, "EUR", "fr", "quatre-vingt-un euros"),
    (9100, "EUR", "fr", "quatre-vingt-onze euros"),
    (1700, "EUR", "fr", "dix-sept euros"),
    (10100, "EUR", "fr", "cent un euros"),
    (20000, "EUR", "fr", "deux cents euros"),
    (20100, "EUR", "fr", "deux cent un euros"),
    (100000, "EUR", "fr", "mille euros"),
    (200000, "EUR", "fr", "deux mille euros"),
    (8000000, "EUR", "fr", "quatre-vingt mille euros"),
    (20000000, "EUR", "fr", "deux cent mille euros"),
    (2100000, "RUB", "fr", "vingt et un mille roubles"),
    (100000000, "EUR", "fr", "un million d'euros"),
    (200000000, "RUB", "fr", "deux millions de roubles"),
    (20000000000, "EUR", "fr", "deux cents millions d'euros"),
    (100000500, "EUR", "fr", "un million cinq euros"),
    # English
    (0, "RUB", "en", "zero roubles"),
    (100, "RUB", "en", "one rouble"),
    (200, "RUB", "en", "two roubles"),
    (1, "RUB", "en", "one kopeck"),
    (100, "EUR", "en", "one euro"),
    (200, "EUR", "en", "two euros"),
    (1, "EUR", "en", "one cent"),
    (21, "EUR", "en", "twenty-one cents"),
    (359, "RUB", "en", "three roubles and fifty-nine kopecks"),
    (120500, "RUB", "en", "one thousand two hundred five roubles"),
    (100000000, "EUR", "en", "one million euros"),
    (
        99999999999,
        "EUR",
        "en",
        "nine hundred ninety-nine million nine hundred ninety-nine thousand "
        "nine hundred ninety-nine euros and ninety-nine cents",
    ),
]


@pytest.mark.parametrize(("amount", "currency", "lang", "text"), EXACT)
def test_exact_money_words(amount: int, currency: str, lang: str, text: str) -> None:
    assert money_words(amount, currency, lang) == text
    assert money_tokens(amount, currency, lang) == tuple(text.split(" "))


def _ru_rule(n: int) -> int:
    """Independent statement of the rule: 0 one, 1 few, 2 many."""
    last, last_two = n % 10, n % 100
    if last_two in (11, 12, 13, 14):
        return 2
    return {1: 0, 2: 1, 3: 1, 4: 1}.get(last, 2)


@pytest.mark.parametrize("lang", ["ru", "fr", "en"])
@pytest.mark.parametrize("currency", ["RUB", "EUR"])
def test_all_amounts_up_to_1000(currency: str, lang: str) -> None:
    ru_rub = (("рубль", "рубля", "рублей"), ("копейка", "копейки", "копеек"))
    for n in range(1001):
        for amount, is_major in ((n * 100, True), (n, n % 100 == 0)):
            tokens = money_tokens(amount, currency, lang)
            assert all(t and " " not in t for t in tokens)
            assert not any(c.isdigit() for t in tokens for c in t)
            count = amount // 100 if is_major else amount % 100
            last = tokens[-1]
            if lang == "ru" and currency == "RUB":
                assert last == ru_rub[0 if is_major else 1][_ru_rule(count)]
            elif lang == "fr" and is_major:
                singular = {"RUB": "rouble", "EUR": "euro"}[currency]
                assert last == (singular if count <= 1 else singular + "s")
            elif lang == "en" and is_major:
                singular = {"RUB": "rouble", "EUR": "euro"}[currency]
                assert last == (singular if count == 1 else singular + "s")


@pytest.mark.parametrize(
    ("n", "expected"),
    [(0, "many"), (1, "one"), (2, "few"), (4, "few"), (5, "many"), (11, "many"),
     (12, "many"), (14, "many"), (21, "one"), (22, "few"), (101, "one"), (111, "many"),
     (112, "many"), (1001, "one"), (-1, "one")],
)  # fmt: skip
def test_plural_ru(n: int, expected: str) -> None:
    assert plural_ru(n, "one", "few", "many") == expected


def test_number_tokens_gender() -> None:
    assert number_tokens(21, "ru", "f") == ("двадцать", "одна")
    assert number_tokens(2, "ru", "f") == ("две",)
    assert number_tokens(1, "ru", "n") == ("одно",)
    assert number_tokens(21, "fr", "f") == ("vingt", "et", "une")
    assert number_tokens(81, "fr", "f") == ("quatre-vingt-une",)
    assert number_tokens(15, "en", "f") == ("fifteen",)


@pytest.mark.parametrize(
    ("amount", "currency", "lang"),
    [(-1, "RUB", "ru"), (100_000_000_000, "RUB", "ru"), (1, "USD", "en"),
     (1, "RUB", "de"), (1.5, "RUB", "ru")],
)  # fmt: skip
def test_bad_money_input(amount: int, currency: str, lang: str) -> None:
    with pytest.raises(WordsError) as caught:
        money_words(amount, currency, lang)
    assert isinstance(caught.value, KinlineError)


def test_bad_number_input() -> None:
    with pytest.raises(WordsError):
        number_tokens(1_000_000_000, "en")
    with pytest.raises(WordsError):
        number_tokens(1, "en", "x")
