"""AgiChannel.get_variables: several variables in one GET FULL VARIABLE, split back by name."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from agi.channel import VALUES_SEPARATOR, AgiChannel
from agi.protocol import AgiProtocolError
from tests.unit.test_agi_protocol import asterisk_parse_args


class Asterisk:
    """Answers GET FULL VARIABLE as res_agi does: the expression with ${NAME} substituted."""

    def __init__(self, reader: asyncio.StreamReader, variables: dict[str, str], reply: str | None = None) -> None:
        self.reader, self.variables, self.reply, self.lines = reader, variables, reply, []

    def write(self, data: bytes) -> None:
        line = data.decode().rstrip("\n")
        self.lines.append(line)
        verb1, verb2, verb3, expression = asterisk_parse_args(line)
        assert (verb1, verb2, verb3) == ("GET", "FULL", "VARIABLE")
        value = expression
        for name, text in self.variables.items():
            value = value.replace("${" + name + "}", text)
        for name in ("DIALSTATUS", "KINLINE_SETTLED", "SHARED(KINLINE_BRIDGED_AT)"):  # unset: empty
            value = value.replace("${" + name + "}", "")
        self.reader.feed_data(f"{self.reply or f'200 result=1 ({value})'}\n".encode())

    async def drain(self) -> None:
        pass


def get_variables(names: tuple[str, ...], variables: dict[str, str],
                  reply: str | None = None) -> tuple[dict[str, str], list[str]]:
    async def run() -> tuple[dict[str, str], list[str]]:
        reader = asyncio.StreamReader()
        asterisk = Asterisk(reader, variables, reply)
        agi = AgiChannel(reader, asterisk, logging.LoggerAdapter(logging.getLogger("test"), {}))  # type: ignore[arg-type]
        return await agi.get_variables(names), asterisk.lines

    return asyncio.run(run())


def test_values_come_back_by_name_in_one_command() -> None:
    plan = json.dumps({"call_id": "1.2-1", "intro": "a&b (c), d", "note": "x\x1fy"})  # JSON escapes \x1f
    values, lines = get_variables(
        ("KINLINE_PLAN", "DIALSTATUS", "KINLINE_CARD", "SHARED(KINLINE_BRIDGED_AT)", "CHANNEL(endpoint)"),
        {"KINLINE_PLAN": plan, "KINLINE_CARD": "100017", "CHANNEL(endpoint)": "term-101"})
    assert len(lines) == 1
    assert values == {"KINLINE_PLAN": plan, "DIALSTATUS": "", "KINLINE_CARD": "100017",
                      "SHARED(KINLINE_BRIDGED_AT)": "", "CHANNEL(endpoint)": "term-101"}
    assert json.loads(values["KINLINE_PLAN"])["note"] == "x\x1fy"


def test_all_unset_reads_empty_strings() -> None:
    values, _ = get_variables(("DIALSTATUS", "KINLINE_SETTLED"), {})
    assert values == {"DIALSTATUS": "", "KINLINE_SETTLED": ""}


def test_a_value_holding_the_separator_is_a_protocol_error() -> None:
    with pytest.raises(AgiProtocolError, match="3 values for 2 names"):
        get_variables(("KINLINE_CARD", "DIALSTATUS"), {"KINLINE_CARD": f"1{VALUES_SEPARATOR}2"})


def test_a_failed_reply_is_a_protocol_error() -> None:
    with pytest.raises(AgiProtocolError):
        get_variables(("KINLINE_CARD", "DIALSTATUS"), {}, reply="200 result=0")


@pytest.mark.parametrize("name", ["A}B", f"A{VALUES_SEPARATOR}B"])
def test_a_name_that_would_break_the_expression_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="not a variable name list"):
        get_variables((name, "DIALSTATUS"), {})
