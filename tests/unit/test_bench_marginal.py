"""make bench's per-call CPU as the calls' own cost (bench.make_bench.marginal_ms)."""

from collections import Counter

from bench.make_bench import StackReport, StepResult, marginal_ms


def step(rate: float, calls: int, seconds: float, per_call: float, per_second: float, good: int | None = None,
         ) -> StepResult:
    """A step whose AGI server spent ``per_call`` a call and ``per_second`` a second, Asterisk 100 a call."""
    agi = (per_call * calls + per_second * seconds) / calls
    return StepResult("Kinline", rate, calls, calls if good is None else good, Counter(),
                      {"agi": agi, "asterisk": 100.0}, seconds=seconds)


def test_the_fit_splits_the_work_per_call_from_the_work_per_second() -> None:
    report = StackReport("Kinline", steps=[step(2, 60, 56, 9.0, 2.0), step(4, 120, 60, 9.0, 2.0),
                                           step(8, 240, 70, 9.0, 2.0)])
    first = report.steps[0].cpu_ms["agi"]
    assert first > 10.8  # the first step's average carries 56 s of the per-second work
    assert abs(marginal_ms(report, ("agi",)) - 9.0) < 1e-6
    assert abs(marginal_ms(report, ("asterisk",)) - 100.0) < 1e-6
    assert abs(marginal_ms(report) - 109.0) < 1e-6  # every process


def test_steps_with_failures_and_too_few_steps_give_no_fit() -> None:
    failing = step(12, 360, 60, 50.0, 0.0, good=300)  # past the knee: left out of the fit
    report = StackReport("Kinline", steps=[step(2, 60, 56, 9.0, 2.0), step(4, 120, 60, 9.0, 2.0), failing])
    assert abs(marginal_ms(report, ("agi",)) - 9.0) < 1e-6
    assert marginal_ms(StackReport("Kinline", steps=[step(2, 60, 56, 9.0, 2.0)])) is None
    # Every step the same calls per second: calls and seconds cannot be told apart.
    same = StackReport("Kinline", steps=[step(2, 60, 30, 9.0, 2.0), step(2, 120, 60, 9.0, 2.0)])
    assert marginal_ms(same) is None
