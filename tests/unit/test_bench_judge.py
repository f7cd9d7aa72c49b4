"""make bench's verdict on a bare Asterisk's calls (bench.make_bench.judge_bare): answered once
at the relative is not enough, the call must have been bridged (its recording holds audio)."""

from pathlib import Path

from bench.make_bench import RECORDED_MIN_BYTES, judge_bare
from bench.sipp_load import StepLogs


def test_a_call_counts_only_if_answered_once_and_bridged(tmp_path: Path) -> None:
    numbers = ["79160000001", "79160000002", "79160000003", "79160000004", "79160000005", "79160000006"]
    logs = StepLogs(
        invites={"79160000001": [1.0], "79160000002": [1.0], "79160000003": [1.0], "79160000004": [1.0, 2.0],
                 "79160000006": [1.0]},
        answered={"79160000001": 1, "79160000002": 1, "79160000003": 1, "79160000004": 2})
    (tmp_path / "79160000001.wav").write_bytes(b"\0" * RECORDED_MIN_BYTES)  # bridged: a second of audio
    (tmp_path / "79160000002.wav").write_bytes(b"\0" * 44)  # answered, never bridged (the header only)
    # 79160000003: answered, no recording at all; 4: dialed twice; 5: never dialed; 6: not answered
    verdicts = judge_bare(numbers, logs, tmp_path)
    assert verdicts == {"": 1, "not bridged": 2, "dialed more than once": 1, "never dialed": 1, "not answered": 1}
