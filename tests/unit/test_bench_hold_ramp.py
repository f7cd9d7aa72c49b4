"""make bench's ramp of recorded calls: batches shrink as the box nears its CPU limit."""

from __future__ import annotations

from bench.make_bench import HOLD_CPU, count_bridged, next_batch


def test_batches_shrink_near_the_limit_and_never_exceed_the_largest() -> None:
    assert [next_batch(cpu, 40) for cpu in (0.0, 0.59, 0.60, 0.71, 0.72, 0.79)] == [40, 40, 20, 20, 10, 10]
    assert next_batch(0.0, 5) == 5
    assert next_batch(HOLD_CPU, 40) == 10  # the last batch before the limit is the smallest


def test_only_two_party_bridges_count() -> None:
    cli = ("Bridge-ID                            Chans Type            Technology      Duration\n"
           "0b6e7d0c-6e0b-4d5e-9a8e-1c7a7f2d3b11     2 basic           simple_bridge   0:00:12\n"
           "1c6e7d0c-6e0b-4d5e-9a8e-1c7a7f2d3b12     1 basic           simple_bridge   0:00:03\n")
    assert count_bridged(cli) == 1
