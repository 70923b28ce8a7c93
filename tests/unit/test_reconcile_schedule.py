"""The reconcile's slots (portal.services.sync.reconcile): nightly by default, intervals that divide a day fall at
the same hours every day, a week starts at the next slot hour, and how late a slot may still run."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from portal.services.sync.outcomes import ChangeLine, ConflictLine, RecordDetail
from portal.services.sync.reconcile import (
    DEFAULT_EVERY_HOURS,
    DEFAULT_HOUR,
    EVERY_CHOICES,
    DriftEntry,
    first_slot,
    grace,
    next_slot,
)


@pytest.mark.parametrize("now, hour, every, expected", [
    (datetime(2026, 12, 6, 13, 5), 2, 24, datetime(2026, 12, 7, 2, 0)),
    (datetime(2026, 12, 6, 1, 59), 2, 24, datetime(2026, 12, 6, 2, 0)),
    (datetime(2026, 12, 6, 2, 0), 2, 24, datetime(2026, 12, 7, 2, 0)),  # strictly after now
    (datetime(2026, 12, 31, 23, 30), 2, 24, datetime(2027, 1, 1, 2, 0)),
    (datetime(2026, 12, 6, 13, 5), 3, 6, datetime(2026, 12, 6, 15, 0)),  # 03, 09, 15, 21
    (datetime(2026, 12, 6, 22, 0), 3, 6, datetime(2026, 12, 7, 3, 0)),
    (datetime(2026, 12, 6, 0, 30), 20, 12, datetime(2026, 12, 6, 8, 0)),  # 08, 20
    (datetime(2026, 12, 6, 13, 5), 2, 168, datetime(2026, 12, 7, 2, 0)),  # a week starts at the next 02:00
])
def test_first_slot(now, hour, every, expected):
    assert first_slot(now, hour, every) == expected


def test_next_slot_keeps_the_series_and_skips_missed_slots():
    due = datetime(2026, 12, 7, 2, 0)
    assert next_slot(due, 24, due) == datetime(2026, 12, 8, 2, 0)
    assert next_slot(due, 24, due + timedelta(hours=5)) == datetime(2026, 12, 8, 2, 0)
    assert next_slot(due, 24, due + timedelta(days=3, hours=1)) == datetime(2026, 12, 11, 2, 0)
    assert next_slot(due, 168, due + timedelta(days=1)) == datetime(2026, 12, 14, 2, 0)
    assert next_slot(due, 6, due + timedelta(hours=13)) == datetime(2026, 12, 7, 20, 0)
    assert next_slot(due, 24, due - timedelta(hours=1)) == due  # not due yet: unchanged


def test_grace_is_half_the_interval_at_most_six_hours():
    assert grace(6) == timedelta(hours=3)
    assert grace(12) == grace(24) == grace(168) == timedelta(hours=6)


def test_defaults_are_nightly_at_two_and_off_is_a_choice():
    assert (DEFAULT_EVERY_HOURS, DEFAULT_HOUR) == (24, 2)
    assert EVERY_CHOICES[0] == "Off" and EVERY_CHOICES[24] == "Every night"
    assert all(24 % hours == 0 or hours % 24 == 0 for hours in EVERY_CHOICES if hours)


def test_a_dry_run_entry_prints_each_way_and_the_rule():
    detail = RecordDetail(to_crm=[ChangeLine("E-mail", "a@x", "b@x")], to_erp=[ChangeLine("Phone", "", "2")],
                          conflicts=[ConflictLine("Phone", "2", "3", "CRM", "CRM wins (sync priority: CRM above ERP)")],
                          errors=["Org. no. could not be written"])
    entry = DriftEntry("Company #1 Acme \u2194 Customer 10", "ERP", detail=detail)
    assert entry.lines() == ["Company #1 Acme \u2194 Customer 10:",
                             "  to the CRM: E-mail: 'a@x' -> 'b@x'",
                             "  to ERP: Phone: (blank) -> '2'",
                             "  conflict: Phone: CRM '2', ERP '3' -> CRM wins (sync priority: CRM above ERP)",
                             "  error: Org. no. could not be written"]
    assert entry.summary().startswith("Company #1 Acme \u2194 Customer 10: to the CRM: E-mail: 'a@x' -> 'b@x'; to ERP")
    broken = DriftEntry("Company #2 \u2194 Customer 11", "ERP", "break")
    assert broken.lines() == ["Company #2 \u2194 Customer 11: would be marked broken (ERP no longer has the actor; "
                              "the CRM record is kept)"]
    assert "would come back" in DriftEntry("Company #3 \u2194 Customer 12", "ERP", "restore").lines()[0]
