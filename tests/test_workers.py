"""Which runs get pytest-xdist workers (tests/support/workers.py, used by tests/conftest.py)."""

from __future__ import annotations

import pytest

from tests.support.workers import selects_system_tests


@pytest.mark.parametrize(
    "markexpr",
    [
        "not load and not synapse",
        "not (load or synapse)",
        "not load and not synapse and not slow",
        "  not synapse and not load ",
    ],
)
def test_the_quick_loop_runs_on_workers(markexpr):
    assert not selects_system_tests(markexpr)


@pytest.mark.parametrize(
    "markexpr",
    [
        None,
        "",
        "load",
        "load or synapse",
        "not load",
        "not synapse",
        "synapse and not load",
        "not (load and synapse)",
        "not load or not synapse",
        "foo(",
        "load(x=1)",
    ],
)
def test_a_run_that_may_select_load_or_synapse_tests_is_serial(markexpr):
    assert selects_system_tests(markexpr)
