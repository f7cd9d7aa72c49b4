"""agi.protocol: the FastAGI codec, checked against Asterisk 22's wire format."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from agi.protocol import (
    AgiCommandError,
    AgiError,
    AgiHangup,
    AgiProtocolError,
    AgiResult,
    format_command,
    parse_environment,
    parse_result,
    quote,
    script_name,
)

# What Asterisk 22 (res_agi.c, setup_env) sends for AGI(agi://127.0.0.1:4573/greeting,...)
# with 12 arguments; agi_accountcode is empty and keeps its trailing space.
ARGS = [f"a{n}" for n in range(1, 13)]
HEADER = [
    "agi_network: yes",
    "agi_network_script: greeting",
    "agi_request: agi://127.0.0.1:4573/greeting",
    "agi_channel: PJSIP/term9001-00000002",
    "agi_language: fr",
    "agi_type: PJSIP",
    "agi_uniqueid: 1718031234.5",
    "agi_version: 22.0.0",
    "agi_callerid: 9001",
    "agi_calleridname: Terminal 9001",
    "agi_callingpres: 0",
    "agi_callingani2: 0",
    "agi_callington: 0",
    "agi_callingtns: 0",
    "agi_dnid: 100",
    "agi_rdnis: unknown",
    "agi_context: kinline-in",
    "agi_extension: 100",
    "agi_priority: 2",
    "agi_enhanced: 0.0",
    "agi_accountcode: ",
    "agi_threadid: 140245123456768",
    # Written 1, 10, 11, 12, 2, ... 9: lexicographic order, to prove we sort numerically.
    *(f"agi_arg_{n}: {ARGS[n - 1]}" for n in sorted(range(1, 13), key=str)),
]


# ---------------------------------------------------------------- environment


def test_environment_of_a_real_asterisk_22_header() -> None:
    env = parse_environment(HEADER)
    assert env.script == "greeting"
    assert env.uniqueid == "1718031234.5"
    assert env.channel == "PJSIP/term9001-00000002"
    assert env.language == "fr"
    assert env.callerid == "9001"
    assert env.extension == "100"
    assert env.context == "kinline-in"
    assert env.request == "agi://127.0.0.1:4573/greeting"
    assert env.extra["agi_calleridname"] == "Terminal 9001"
    assert env.extra["agi_type"] == "PJSIP"
    assert env.extra["agi_version"] == "22.0.0"
    assert env.extra["agi_priority"] == "2"
    assert env.extra["agi_enhanced"] == "0.0"
    assert env.extra["agi_threadid"] == "140245123456768"
    assert env.extra["agi_accountcode"] == ""
    assert env.extra["agi_network"] == "yes"


def test_arguments_are_ordered_numerically_not_lexicographically() -> None:
    env = parse_environment(HEADER)
    assert env.arguments == tuple(ARGS)
    assert env.arguments[1] == "a2"  # "agi_arg_10" sorts before "agi_arg_2" as text
    assert env.arguments[9] == "a10"


def test_arguments_keep_spaces_and_empty_values() -> None:
    env = parse_environment(["agi_uniqueid: 1.1", "agi_arg_2: ", "agi_arg_1: two words"])
    assert env.arguments == ("two words", "")


def test_environment_defaults_when_optional_keys_are_missing() -> None:
    env = parse_environment(["agi_uniqueid: 42.7", "agi_request: agi://10.0.0.1/menu?lang=fr"])
    assert env.uniqueid == "42.7"
    assert env.script == "menu"  # falls back on agi_request
    assert env.language == "en"
    assert env.channel == ""
    assert env.arguments == ()


def test_value_may_contain_colons() -> None:
    env = parse_environment(["agi_uniqueid: 1.2", "agi_calleridname: Desk: A:B"])
    assert env.extra["agi_calleridname"] == "Desk: A:B"


def test_missing_uniqueid_is_a_protocol_error() -> None:
    with pytest.raises(AgiProtocolError, match="agi_uniqueid"):
        parse_environment([line for line in HEADER if not line.startswith("agi_uniqueid")])


@pytest.mark.parametrize(
    "line",
    ["GET / HTTP/1.1", "agi_uniqueid 1.2", "AGI_UNIQUEID: 1.2", ": value", "agi_: x:", "200 result=0"],
)
def test_malformed_environment_line(line: str) -> None:
    with pytest.raises(AgiProtocolError, match="not an AGI environment line"):
        parse_environment(["agi_uniqueid: 1.2", line])


@pytest.mark.parametrize(
    ("agi_request", "expected"),
    [
        ("agi://127.0.0.1:4573/greeting", "greeting"),
        ("agi://127.0.0.1:4573/greeting?lang=fr&x=1", "greeting"),
        ("agi://127.0.0.1/greeting/", "greeting"),
        ("agi://127.0.0.1:4573", ""),
        ("agi://127.0.0.1:4573/", ""),
        ("greeting", "greeting"),
        ("greeting?x=1", "greeting"),
        ("/greeting", "greeting"),
        ("", ""),
    ],
)
def test_script_name(agi_request: str, expected: str) -> None:
    assert script_name(agi_request) == expected


def test_network_script_with_query_string() -> None:
    # Asterisk puts everything after the host's "/" in agi_network_script.
    env = parse_environment(
        ["agi_network_script: greeting?lang=fr", "agi_request: agi://h/greeting?lang=fr", "agi_uniqueid: 1.3"]
    )
    assert env.script == "greeting"


# ---------------------------------------------------------------- quoting


@pytest.mark.parametrize(
    ("arg", "quoted"),
    [
        ("plain", '"plain"'),
        ("two words", '"two words"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("C:\\path\\", '"C:\\\\path\\\\"'),
        ('\\"', '"\\\\\\""'),
        ("", '""'),
        (0, '"0"'),
        (10000, '"10000"'),
        (-1, '"-1"'),
        ("tab\there", '"tab\there"'),
        ("é 日本", '"é 日本"'),
    ],
)
def test_quote(arg: str | int, quoted: str) -> None:
    assert quote(arg) == quoted


@pytest.mark.parametrize("arg", ["a\nb", "a\rb", "\r\n", "end\n", "a\x00b"])
def test_quote_refuses_line_breaks_and_nul(arg: str) -> None:
    with pytest.raises(ValueError):
        quote(arg)


def test_format_command() -> None:
    assert format_command("ANSWER") == b"ANSWER\n"
    assert format_command("SET VARIABLE", "KINLINE_DIGITS", "0012") == b'SET VARIABLE "KINLINE_DIGITS" "0012"\n'
    assert (
        format_command("GET DATA", "kinline/en/enter-digits", 10000, 20)
        == b'GET DATA "kinline/en/enter-digits" "10000" "20"\n'
    )
    assert format_command("STREAM FILE", "welcome", "") == b'STREAM FILE "welcome" ""\n'
    assert format_command("VERBOSE", 'x "y"', 1) == b'VERBOSE "x \\"y\\"" "1"\n'
    assert format_command("SET VARIABLE", "N", "é") == 'SET VARIABLE "N" "é"\n'.encode()


@pytest.mark.parametrize(
    "verb", ["answer", "Answer", "A", " ANSWER", "ANSWER ", "GET DATA\n", "EXEC;HANGUP", "SET-VAR", "", 5]
)
def test_format_command_refuses_bad_verbs(verb: str | int) -> None:
    with pytest.raises(ValueError, match="not an AGI verb"):
        format_command(verb)


def test_format_command_refuses_empty_and_line_breaks() -> None:
    with pytest.raises(ValueError, match="empty"):
        format_command()
    with pytest.raises(ValueError, match="line breaks"):
        format_command("SET VARIABLE", "X", "1\nHANGUP")


# ---------------------------------------------------------------- replies


@pytest.mark.parametrize(
    ("line", "text", "data", "extra", "result"),
    [
        ("200 result=0", "0", "", "", 0),
        ("200 result=1 (value)", "1", "value", "", 1),
        ("200 result=1 (two words)", "1", "two words", "", 1),
        ("200 result=1 (a) b)", "1", "a) b", "", 1),  # GET VARIABLE value holding ")"
        ("200 result=1 ()", "1", "", "", 1),
        ("200 result=1234 (timeout)", "1234", "timeout", "", 1234),
        ("200 result= (timeout)", "", "timeout", "", 0),
        ("200 result=0012", "0012", "", "", 12),
        ("200 result=*12", "*12", "", "", 0),
        ("200 result=0 endpos=16000", "0", "", "endpos=16000", 0),
        ("200 result=35 endpos=8000", "35", "", "endpos=8000", 35),
        ("200 result=1 (dtmf) endpos=4000", "1", "dtmf", "endpos=4000", 1),
        ("200 result=0\r\n", "0", "", "", 0),
    ],
)
def test_parse_result(line: str, text: str, data: str, extra: str, result: int) -> None:
    parsed = parse_result(line)
    assert parsed == AgiResult(text, data, extra)
    assert parsed.result == result


def test_get_data_keeps_leading_zeros_as_text() -> None:
    assert parse_result("200 result=0012").text == "0012"


@pytest.mark.parametrize(
    "line",
    [
        "200 result=-1",
        "200 result=-1 endpos=0",
        "HANGUP",
        "HANGUP\n",
        "511 Command Not Permitted on a dead channel or intercept routine",
    ],
)
def test_hangup_replies(line: str) -> None:
    with pytest.raises(AgiHangup):
        parse_result(line)


def test_510_is_a_command_error() -> None:
    with pytest.raises(AgiCommandError) as info:
        parse_result("510 Invalid or unknown command")
    assert info.value.code == 510
    assert info.value.message == "Invalid or unknown command"
    assert str(info.value) == "510 Invalid or unknown command"


def test_single_line_520_is_a_command_error() -> None:
    with pytest.raises(AgiCommandError) as info:
        parse_result("520 Invalid command syntax.  Proper usage not available.")
    assert info.value.code == 520
    assert info.value.message == "Invalid command syntax.  Proper usage not available."


@pytest.mark.parametrize(
    "line",
    ["", "garbage", "200", "200 result", "200 results=1", "503 result=-2 Memory allocation failure", "hangup", "OK"],
)
def test_garbage_is_a_protocol_error(line: str) -> None:
    with pytest.raises(AgiProtocolError, match="unexpected AGI reply"):
        parse_result(line)


def test_errors_share_a_base() -> None:
    for cls in (AgiHangup, AgiProtocolError, AgiCommandError):
        assert issubclass(cls, AgiError)


# ---------------------------------------------------------------- property


def asterisk_parse_args(line: str) -> list[str]:
    """Python transcription of res_agi.c ``parse_args``: how Asterisk splits a command."""
    words: list[list[str]] = []
    cur: list[str] | None = None
    quoted = escaped = False
    whitespace = True
    for ch in line:
        if ch == '"' and not escaped:
            quoted = not quoted
            if quoted and whitespace:
                cur = []
                words.append(cur)
                whitespace = False
            escaped = False
            continue
        if ch in " \t" and not quoted and not escaped:
            whitespace = True
            continue
        if ch == "\\" and not escaped:
            escaped = True
            continue
        if whitespace:
            cur = []
            words.append(cur)
            whitespace = False
        assert cur is not None
        cur.append(ch)
        escaped = False
    return ["".join(w) for w in words]


def test_reference_unquoter_follows_asterisk() -> None:
    assert asterisk_parse_args('GET DATA "a b" "" x\\ y "q\\"q"') == ["GET", "DATA", "a b", "", "x y", 'q"q']


@given(st.text(alphabet=st.characters(blacklist_characters="\r\n\x00", blacklist_categories=("Cs",))))
@example("")
@example('"')
@example("\\")
@example('\\"')
@example(' "a" \\ b\t')
@example("\\\\\\")
def test_quote_round_trips_through_asterisk(text: str) -> None:
    line = format_command("SET VARIABLE", "X", text).decode()
    assert line.endswith("\n")
    assert asterisk_parse_args(line[:-1]) == ["SET", "VARIABLE", "X", text]
    assert asterisk_parse_args(quote(text)) == [text]


@given(st.lists(st.one_of(st.integers(), st.text(alphabet=st.characters(
    blacklist_characters="\r\n\x00", blacklist_categories=("Cs",))))))
def test_many_arguments_stay_apart(args: list[str | int]) -> None:
    line = format_command("EXEC", *args).decode()
    assert asterisk_parse_args(line[:-1]) == ["EXEC", *(str(a) for a in args)]


def test_lone_surrogates_are_refused() -> None:
    with pytest.raises(ValueError):
        format_command("EXEC", "\ud800")
