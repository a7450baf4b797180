"""How many pytest-xdist workers a run gets: parallel only when it leaves out the `load` and `synapse` tests.

Those tests load or measure the whole system (bursts of hundreds of users, kill -9, locks held for seconds, one
Synapse per session) and must not share the machine with other tests, so a run that may select them stays serial.
``selects_system_tests(markexpr)`` answers from the ``-m`` expression alone (it is known before collection, when
xdist decides): it evaluates the expression for a test carrying only ``load`` and for one carrying only ``synapse``.
Anything it cannot read counts as selecting them (a serial run is the safe side).
"""

from __future__ import annotations

import ast

SYSTEM_MARKERS = ("load", "synapse")


def _holds(node: ast.AST, marks: frozenset[str]) -> bool:
    if isinstance(node, ast.Name):
        return node.id in marks
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return not _holds(node.operand, marks)
    if isinstance(node, ast.BoolOp):
        values = (_holds(v, marks) for v in node.values)
        return all(values) if isinstance(node.op, ast.And) else any(values)
    raise ValueError(f"not a plain marker expression: {ast.dump(node)}")


def selects_system_tests(markexpr: str | None) -> bool:
    """True when ``pytest -m markexpr`` may run a `load` or `synapse` test (always, without -m)."""
    if not (markexpr or "").strip():
        return True
    try:
        tree = ast.parse(markexpr.strip(), mode="eval").body
        return any(_holds(tree, frozenset({mark})) for mark in SYSTEM_MARKERS)
    except (SyntaxError, ValueError):
        return True
