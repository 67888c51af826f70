"""bench --e2e's latency: a payload's ts is truncated to the millisecond, so the
capture time is taken as the middle of that millisecond."""

from __future__ import annotations

import pytest

from edgepose.cli.e2e import latency_ms
from edgepose.messages import iso_utc


@pytest.mark.parametrize("sub_ms", [0.0, 0.0004, 0.0009999])
def test_latency_is_within_half_a_millisecond_wherever_the_capture_fell(sub_ms: float):
    captured = 1_700_000_000.123 + sub_ms
    arrival = captured + 0.020  # 20 ms later
    measured = latency_ms(arrival, iso_utc(captured))
    assert abs(measured - 20.0) <= 0.501  # epoch seconds in a double: about 0.2 us steps


def test_latency_is_unbiased_over_a_millisecond():
    errors = []
    for k in range(1000):
        captured = 1_700_000_000.037 + k * 1e-6  # evenly over one millisecond
        errors.append(latency_ms(captured + 0.015, iso_utc(captured)) - 15.0)
    assert abs(sum(errors) / len(errors)) < 0.05
