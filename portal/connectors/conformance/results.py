"""What a conformance run produces: the four statuses, one :class:`CheckResult` per check, the exceptions a check
raises to FAIL or SKIP, and the report table."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

PASS, FAIL, WARN, SKIP = "PASS", "FAIL", "WARN", "SKIP"
STATUSES = (PASS, FAIL, WARN, SKIP)


@dataclass
class CheckResult:
    """One line of the report. ``passed`` is False only for FAIL (WARN and SKIP do not fail the run)."""

    name: str
    passed: bool
    reason: str = ""
    seconds: float = 0.0
    status: str = ""

    def __post_init__(self) -> None:
        if not self.status:
            self.status = PASS if self.passed else FAIL
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}")
        self.passed = self.status != FAIL


class Failed(Exception):
    """Raised inside a check: the connector broke the contract."""


class Skipped(Exception):
    """Raised inside a check: it cannot run."""


def has_failures(results: Iterable[CheckResult]) -> bool:
    return any(r.status == FAIL for r in results)


def format_table(results: Sequence[CheckResult]) -> str:
    """The report: ``name | status | seconds | reason`` plus a summary line."""
    width = max([len("check")] + [len(r.name) for r in results])
    lines = [f"{'check':<{width}} | status | seconds | reason", f"{'-' * width}-+--------+---------+-{'-' * 30}"]
    for r in results:
        lines.append(f"{r.name:<{width}} | {r.status:<6} | {r.seconds:7.2f} | {r.reason}")
    counts = {s: sum(1 for r in results if r.status == s) for s in STATUSES}
    lines.append("")
    lines.append(f"{counts[PASS]} passed, {counts[FAIL]} failed, {counts[WARN]} warnings, {counts[SKIP]} skipped "
                 f"in {sum(r.seconds for r in results):.2f} s")
    return "\n".join(lines)
