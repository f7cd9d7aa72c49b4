"""ami.protocol: AMI messages as Asterisk 22 writes them."""

from __future__ import annotations

import pytest

from ami.protocol import AmiMessage, AmiProtocolError, format_action, parse_message


def test_event() -> None:
    message = parse_message(
        "Event: Newchannel\r\n"
        "Privilege: call,all\r\n"
        "Channel: PJSIP/term9001-00000002\r\n"
        "CallerIDName: Terminal 9001\r\n"
        "Exten: 100\r\n"
        "Uniqueid: 1718031234.5\r\n"
        "Timestamp: 12:34:56\r\n"
        "\r\n"
    )
    assert message.event == "Newchannel"
    assert message.response == ""
    assert message.get("Channel") == "PJSIP/term9001-00000002"
    assert message.get("CallerIDName") == "Terminal 9001"
    assert message.get("Uniqueid") == "1718031234.5"
    assert message.get("Timestamp") == "12:34:56"  # only the first ":" separates
    assert message.get("Missing") == ""
    assert message.get("Missing", "dflt") == "dflt"
    assert message.lines == ()


def test_response() -> None:
    message = parse_message(
        "Response: Success\r\nActionID: kinline-1\r\nMessage: Authentication accepted\r\n\r\n"
    )
    assert message == AmiMessage(
        {"Response": "Success", "ActionID": "kinline-1", "Message": "Authentication accepted"}, ()
    )
    assert message.response == "Success"
    assert message.event == ""


def test_empty_value_and_surrounding_spaces() -> None:
    message = parse_message("Event: VarSet\r\nValue:\r\nAccountCode: \r\nVariable:  X  \r\n")
    assert message.get("Value") == ""
    assert message.get("AccountCode") == ""
    assert message.get("Variable") == "X"


def test_command_output_lines_keep_order_and_indentation() -> None:
    message = parse_message(
        "Response: Success\r\n"
        "ActionID: kinline-3\r\n"
        "Message: Command output follows\r\n"
        "Output: Channel              Location             State   Application(Data)\r\n"
        "Output:   PJSIP/term9001-0000 100@kinline-in:2     Up      AGI(agi://127.0.0.1:4573/gree\r\n"
        "Output: \r\n"
        "Output: 1 active channel\r\n"
        "\r\n"
    )
    assert message.response == "Success"
    assert message.get("Message") == "Command output follows"
    assert message.lines == (
        "Channel              Location             State   Application(Data)",
        "  PJSIP/term9001-0000 100@kinline-in:2     Up      AGI(agi://127.0.0.1:4573/gree",
        "",
        "1 active channel",
    )
    assert message.get("Output") == "1 active channel"


@pytest.mark.parametrize(
    "block",
    [
        "Response: Success\r\nthis line has no colon\r\n\r\n",
        "Asterisk Call Manager/11.0.0\r\n",
        "--END COMMAND--\r\n",
        "",
        "\r\n\r\n",
    ],
)
def test_malformed(block: str) -> None:
    with pytest.raises(AmiProtocolError):
        parse_message(block)


def test_format_action() -> None:
    data = format_action("Login", "kinline-1", {"Username": "kinline", "Secret": "s3cret", "Events": "on"})
    assert data == (
        b"Action: Login\r\nActionID: kinline-1\r\nUsername: kinline\r\nSecret: s3cret\r\nEvents: on\r\n\r\n"
    )


def test_format_action_without_fields() -> None:
    assert format_action("Ping", "kinline-7", {}) == b"Action: Ping\r\nActionID: kinline-7\r\n\r\n"


def test_format_action_round_trips_through_parse() -> None:
    data = format_action("Command", "kinline-2", {"Command": "core show channels concise"})
    message = parse_message(data.decode())
    assert message.fields == {
        "Action": "Command",
        "ActionID": "kinline-2",
        "Command": "core show channels concise",
    }


@pytest.mark.parametrize(
    ("name", "action_id", "fields"),
    [
        ("Originate", "kinline-1", {"Channel": "PJSIP/x\r\nAction: Hangup"}),
        ("Originate", "kinline-1", {"Channel": "PJSIP/x\n"}),
        ("Originate", "kinline-1", {"Chan\rnel": "x"}),
        ("Ping\r\nAction: Hangup", "kinline-1", {}),
        ("Ping", "kinline-1\nChannel: x", {}),
    ],
)
def test_format_action_refuses_line_breaks(name: str, action_id: str, fields: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="line breaks"):
        format_action(name, action_id, fields)
