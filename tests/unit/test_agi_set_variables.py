"""AgiChannel.set_variables: one EXEC MSet for plain values, SET VARIABLE for the rest."""

from __future__ import annotations

import asyncio
import logging

import pytest

from agi.channel import AgiChannel
from agi.protocol import AgiCommandError
from tests.unit.test_agi_protocol import asterisk_parse_args


class Asterisk:
    """Answers each command line with the next reply; keeps the lines."""

    def __init__(self, reader: asyncio.StreamReader, reply: str = "200 result=0") -> None:
        self.reader, self.reply, self.lines = reader, reply, []

    def write(self, data: bytes) -> None:
        self.lines.append(data.decode().rstrip("\n"))
        answer = self.reply if self.lines[-1].startswith("EXEC") else "200 result=1"
        self.reader.feed_data(f"{answer}\n".encode())

    async def drain(self) -> None:
        pass


def set_variables(values: dict[str, str | int], reply: str = "200 result=0",
                  round_trips: list[float] | None = None) -> list[str]:
    """The command lines AgiChannel.set_variables sends for ``values``."""
    async def run() -> list[str]:
        reader = asyncio.StreamReader()
        asterisk = Asterisk(reader, reply)
        agi = AgiChannel(reader, asterisk, logging.LoggerAdapter(logging.getLogger("test"), {}))  # type: ignore[arg-type]
        if round_trips is not None:
            agi.on_round_trip = round_trips.append
        await agi.set_variables(values)
        return asterisk.lines

    return asyncio.run(run())


def test_plain_values_go_in_one_mset_in_order() -> None:
    round_trips: list[float] = []
    values: dict[str, str | int] = {"KINLINE_NUMBER": "+79161234567", "KINLINE_DIAL_END": "", "KINLINE_RING_S": 45,
              "KINLINE_INTRO": "kinline/en/callee-intro&/var/lib/kinline/names/inmate-1",
              "KINLINE_DIAL_TARGET": "PJSIP/+79161234567@trunk", "KINLINE_ACTION": "dial"}
    lines = set_variables(values, round_trips=round_trips)
    assert len(lines) == 1
    verb, app, arg = asterisk_parse_args(lines[0])
    assert (verb, app) == ("EXEC", "MSet")
    # MSet splits on ',' then on the first '=': the pairs come back as sent, ACTION last.
    assert [tuple(pair.split("=", 1)) for pair in arg.split(",")] == [(k, str(v)) for k, v in values.items()]
    assert len(round_trips) == 1  # overload control sees the round trip


@pytest.mark.parametrize("value", ['{"a":1,"b":2}', "a b", "x=y", "back\\slash", "$ {EXTEN}", "semi;colon"])
def test_a_value_mset_would_misread_goes_by_set_variable(value: str) -> None:
    lines = set_variables({"KINLINE_A": "1", "KINLINE_B": value})
    assert [line.split(" ")[0:2] for line in lines] == [["SET", "VARIABLE"]] * 2
    assert asterisk_parse_args(lines[1]) == ["SET", "VARIABLE", "KINLINE_B", value]


def test_one_value_is_one_set_variable() -> None:
    assert set_variables({"KINLINE_ACTION": "dial"}) == ['SET VARIABLE "KINLINE_ACTION" "dial"']


def test_a_failed_mset_is_an_error_not_a_silent_success() -> None:
    with pytest.raises(AgiCommandError):  # -2: no such application
        set_variables({"KINLINE_A": "1", "KINLINE_ACTION": "dial"}, reply="200 result=-2")


def test_values_too_long_for_one_command_line_go_in_several_msets_in_order() -> None:
    # res_agi reads a command line into 2048 bytes: a long plan and Dial's settings are cut in two.
    values: dict[str, str | int] = {"KINLINE_PLAN": "A" * 1400, "KINLINE_INTRO": "kinline/en/x&" * 40 + "y",
                                    "KINLINE_DIAL_TARGET": "PJSIP/+79161234567@trunk", "KINLINE_ACTION": "dial"}
    lines = set_variables(values)
    assert len(lines) == 2 and all(len(line.encode()) < 2048 for line in lines)
    pairs = [tuple(pair.split("=", 1)) for line in lines for pair in asterisk_parse_args(line)[2].split(",")]
    assert pairs == [(k, str(v)) for k, v in values.items()]  # in order: ACTION last, in the last command
