"""Unit tests of the three-way merge (portal.services.sync.merge): one test per written rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from portal.models.erp import ConflictPolicy
from portal.services.sync.merge import Conflict, FieldRule, MergeResult, apply, merge, record_hash, winning_side

TWO = FieldRule("f", to_crm=True, to_erp=True)
TO_ERP = FieldRule("f", to_crm=False, to_erp=True)
TO_CRM = FieldRule("f", to_crm=True, to_erp=False)
NONE = FieldRule("f", to_crm=False, to_erp=False)

T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


def one(rule, base, c, e, **kw):
    """Merge a single field 'f'; base=... sentinel handling: pass None for 'agreed blank', or 'MISSING'."""
    kw.setdefault("policy", "priority")
    base_map = {} if base == "MISSING" else {"f": base}
    return merge([rule], base_map, {"f": c}, {"f": e}, **kw)


# ------------------------------------------------------------------------------------------- agree


@pytest.mark.parametrize("rule", [TWO, TO_ERP, TO_CRM, NONE])
@pytest.mark.parametrize("base", ["MISSING", None, "old", "x"])
def test_equal_values_are_never_rewritten(rule, base):
    result = one(rule, base, "x", "x")
    assert result.to_crm == {} and result.to_erp == {} and result.conflicts == []
    assert result.new_base == {"f": "x"}
    assert not result.changed


def test_none_equals_none():
    result = one(TWO, "old", None, None)
    assert not result.changed and result.new_base == {"f": None}


# ------------------------------------------------------------------------------------ one side changed


def test_only_crm_changed_flows_to_erp():
    result = one(TWO, "old", "new", "old")
    assert result.to_erp == {"f": "new"} and result.to_crm == {}
    assert result.new_base == {"f": "new"} and result.conflicts == []
    assert result.changed


def test_only_erp_changed_flows_to_crm():
    result = one(TWO, "old", "old", "new")
    assert result.to_crm == {"f": "new"} and result.to_erp == {}
    assert result.new_base == {"f": "new"} and result.conflicts == []


def test_only_crm_changed_but_direction_off_keeps_base():
    result = one(TO_CRM, "old", "new", "old")
    assert not result.changed and result.conflicts == []
    assert result.new_base == {"f": "old"}  # the CRM edit stays pending


def test_only_erp_changed_but_direction_off_keeps_base():
    result = one(TO_ERP, "old", "old", "new")
    assert not result.changed and result.new_base == {"f": "old"}


def test_pending_change_flows_once_direction_enabled():
    base, crm, erp = {"f": "old"}, {"f": "new"}, {"f": "old"}
    first = merge([TO_CRM], base, crm, erp, policy="priority")
    assert not first.changed
    second = merge([TWO], first.new_base, crm, erp, policy="priority")
    assert second.to_erp == {"f": "new"} and second.conflicts == []


def test_change_from_and_to_blank():
    assert one(TWO, "old", None, "old").to_erp == {"f": None}
    assert one(TWO, None, "new", None).to_erp == {"f": "new"}
    assert one(TWO, None, None, "new").to_crm == {"f": "new"}


def test_agreed_blank_base_is_not_missing_base():
    result = one(TWO, None, "new", None)
    assert result.conflicts == []  # agreed blank -> only the CRM changed
    result = one(TWO, "MISSING", "new", None)
    assert len(result.conflicts) == 1  # no agreed value -> conflict


# ------------------------------------------------------------------------------------------- conflicts


@pytest.mark.parametrize(
    "policy, crm_rank, erp_rank, winner, rule",
    [
        ("crm", 0, 1, "crm", "CRM wins (conflict policy: CRM wins)"),
        ("crm", 1, 0, "crm", "CRM wins (conflict policy: CRM wins)"),
        ("erp", 0, 1, "erp", "Demo ERP wins (conflict policy: Demo ERP wins)"),
        ("priority", 0, 1, "crm", "CRM wins (sync priority: CRM above Demo ERP)"),
        ("priority", 2, 1, "erp", "Demo ERP wins (sync priority: Demo ERP above CRM)"),
        ("priority", 1, 1, "crm", "CRM wins (equal sync priority: the CRM is preferred)"),
        (ConflictPolicy.PRIORITY, 3, 0, "erp", "Demo ERP wins (sync priority: Demo ERP above CRM)"),
        (ConflictPolicy.CRM, 3, 0, "crm", "CRM wins (conflict policy: CRM wins)"),
    ],
)
def test_two_way_conflict_policies(policy, crm_rank, erp_rank, winner, rule):
    result = one(
        TWO, "old", "crm-new", "erp-new", policy=policy, crm_rank=crm_rank, erp_rank=erp_rank, erp_name="Demo ERP"
    )
    value = "crm-new" if winner == "crm" else "erp-new"
    assert result.conflicts == [
        Conflict(key="f", base="old", crm="crm-new", erp="erp-new", winner=winner, value=value, rule=rule)
    ]
    assert (result.to_erp if winner == "crm" else result.to_crm) == {"f": value}
    assert (result.to_crm if winner == "crm" else result.to_erp) == {}
    assert result.new_base == {"f": value}


@pytest.mark.parametrize(
    "crm_at, erp_at, winner, why",
    [
        (T1, T0, "crm", "changed most recently"),
        (T0, T1, "erp", "changed most recently"),
        (T0, T0, "crm", "changed at the same time; sync priority: CRM above ERP"),
        (None, T1, "crm", "change times unknown; sync priority: CRM above ERP"),
        (T1, None, "crm", "change times unknown; sync priority: CRM above ERP"),
        (None, None, "crm", "change times unknown; sync priority: CRM above ERP"),
    ],
)
def test_newest_policy(crm_at, erp_at, winner, why):
    result = one(TWO, "old", "c", "e", policy="newest", crm_changed_at=crm_at, erp_changed_at=erp_at)
    (conflict,) = result.conflicts
    assert conflict.winner == winner
    assert conflict.rule == f"{'CRM' if winner == 'crm' else 'ERP'} wins ({why})"


def test_newest_falls_back_to_priority_order():
    result = one(TWO, "old", "c", "e", policy="newest", crm_rank=1, erp_rank=0)
    assert result.conflicts[0].winner == "erp"
    assert result.conflicts[0].rule == "ERP wins (change times unknown; sync priority: ERP above CRM)"


def test_newest_mixes_naive_and_aware_times():
    naive_later = datetime(2026, 11, 25, 10, 30)  # taken as UTC
    aware = datetime(2026, 11, 25, 11, 0, tzinfo=timezone(timedelta(hours=1)))  # 10:00 UTC
    result = one(TWO, "old", "c", "e", policy="newest", crm_changed_at=naive_later, erp_changed_at=aware)
    assert result.conflicts[0].winner == "crm"
    result = one(TWO, "old", "c", "e", policy="newest", crm_changed_at=aware, erp_changed_at=naive_later)
    assert result.conflicts[0].winner == "erp"


@pytest.mark.parametrize("policy", ["crm", "erp", "priority", "newest"])
def test_one_way_conflict_source_wins_whatever_the_policy(policy):
    result = one(TO_ERP, "old", "c", "e", policy=policy, crm_rank=5, erp_rank=0, erp_changed_at=T1)
    assert result.to_erp == {"f": "c"} and result.to_crm == {}
    assert result.conflicts[0].winner == "crm"
    assert result.conflicts[0].rule == "CRM wins (only CRM \u2192 ERP is mapped)"

    result = one(TO_CRM, "old", "c", "e", policy=policy, crm_rank=0, erp_rank=5, crm_changed_at=T1)
    assert result.to_crm == {"f": "e"} and result.to_erp == {}
    assert result.conflicts[0].winner == "erp"
    assert result.conflicts[0].rule == "ERP wins (only ERP \u2192 CRM is mapped)"


def test_conflict_without_any_direction_is_not_recorded():
    result = one(NONE, "old", "c", "e")
    assert not result.changed and result.conflicts == [] and result.new_base == {"f": "old"}
    result = one(NONE, "MISSING", "c", "e")
    assert not result.changed and result.conflicts == [] and result.new_base == {}


def test_missing_base_is_a_conflict_with_no_agreed_value():
    result = one(TWO, "MISSING", "c", "e", policy="erp", erp_name="Demo ERP")
    (conflict,) = result.conflicts
    assert conflict.has_base is False and conflict.base is None
    assert conflict.rule == "Demo ERP wins (no agreed value; conflict policy: Demo ERP wins)"
    assert result.to_crm == {"f": "e"} and result.new_base == {"f": "e"}


def test_missing_base_one_way():
    result = one(TO_ERP, "MISSING", "c", None)
    assert result.to_erp == {"f": "c"}
    assert result.conflicts[0].rule == "CRM wins (no agreed value; only CRM \u2192 ERP is mapped)"


def test_missing_base_with_equal_values_agrees_silently():
    result = one(TWO, "MISSING", "same", "same")
    assert not result.changed and result.conflicts == [] and result.new_base == {"f": "same"}


def test_blank_wins_a_conflict_without_no_blank():
    result = one(TWO, "old", None, "e", policy="crm")
    assert result.to_erp == {"f": None} and result.conflicts[0].value is None


# -------------------------------------------------------------------------------------------- no_blank


def test_no_blank_stops_blank_from_crm():
    result = one(TWO, "old", None, "old", no_blank=True)
    assert not result.changed and result.new_base == {"f": "old"} and result.skipped_blank == ["f"]


def test_no_blank_stops_blank_from_erp():
    result = one(TWO, "old", "old", None, no_blank=True)
    assert not result.changed and result.new_base == {"f": "old"} and result.skipped_blank == ["f"]


def test_no_blank_conflict_with_blank_winner_writes_nothing():
    result = one(TWO, "old", None, "e", policy="crm", no_blank=True)
    assert not result.changed and result.conflicts == [] and result.new_base == {"f": "old"}
    assert result.skipped_blank == ["f"]


def test_no_blank_missing_base_blank_winner():
    result = one(TWO, "MISSING", "", "e", policy="crm", no_blank=True)  # '' counts as blank too
    assert not result.changed and result.new_base == {}


def test_no_blank_still_lets_non_blank_values_through():
    assert one(TWO, "old", "new", "old", no_blank=True).to_erp == {"f": "new"}
    assert one(TWO, None, "new", None, no_blank=True).to_erp == {"f": "new"}
    result = one(TWO, "old", None, "e", policy="erp", no_blank=True)
    assert result.to_crm == {"f": "e"} and len(result.conflicts) == 1


def test_no_blank_zero_and_false_are_not_blank():
    assert one(TWO, 5, 0, 5, no_blank=True).to_erp == {"f": 0}
    assert one(TWO, True, False, True, no_blank=True).to_erp == {"f": False}


# ---------------------------------------------------------------------------------------------- modes


def test_from_crm_ignores_base_and_overwrites():
    rules = [FieldRule("a", True, True), FieldRule("b", False, True), FieldRule("c", True, False)]
    base = {"a": "x", "b": "x", "c": "x"}
    crm = {"a": "x", "b": "crm", "c": "crm"}
    erp = {"a": "erp", "b": "x", "c": "erp"}
    result = merge(rules, base, crm, erp, policy="erp", mode="from_crm")
    assert result.to_erp == {"a": "x", "b": "crm"}
    assert result.to_crm == {} and result.conflicts == []
    assert result.new_base == {"a": "x", "b": "crm", "c": "x"}


def test_from_erp_ignores_base_and_overwrites():
    rules = [FieldRule("a", True, True), FieldRule("b", False, True), FieldRule("c", True, False)]
    base = {}
    crm = {"a": "crm", "b": "crm", "c": "crm"}
    erp = {"a": "erp", "b": "erp", "c": "crm"}
    result = merge(rules, base, crm, erp, policy="crm", mode="from_erp")
    assert result.to_crm == {"a": "erp"}
    assert result.to_erp == {} and result.conflicts == []
    assert result.new_base == {"a": "erp", "c": "crm"}


def test_resync_respects_no_blank():
    rules = [FieldRule("a", True, True), FieldRule("b", True, True)]
    crm = {"a": None, "b": "new"}
    erp = {"a": "keep", "b": None}
    result = merge(rules, {"a": "keep"}, crm, erp, policy="priority", mode="from_crm", no_blank=True)
    assert result.to_erp == {"b": "new"} and result.skipped_blank == ["a"]
    assert result.new_base == {"a": "keep", "b": "new"}
    result = merge(rules, {}, crm, erp, policy="priority", mode="from_crm")
    assert result.to_erp == {"a": None, "b": "new"}


def test_resync_writes_nothing_when_equal():
    result = merge([TWO], {}, {"f": 1}, {"f": 1}, policy="priority", mode="from_erp")
    assert not result.changed and result.new_base == {"f": 1}


# ------------------------------------------------------------------------------------- misc behaviour


def test_several_fields_in_rule_order_and_untouched_base_keys_pass_through():
    rules = [FieldRule("z", True, True), FieldRule("a", True, True), FieldRule("m", True, True)]
    base = {"z": 1, "a": 1, "m": 1, "gone": "kept"}
    crm = {"z": 2, "a": 3, "m": 1}
    erp = {"z": 1, "a": 4, "m": 5}
    result = merge(rules, base, crm, erp, policy="crm")
    assert list(result.to_erp) == ["z", "a"] and result.to_crm == {"m": 5}
    assert [c.key for c in result.conflicts] == ["a"]
    assert result.new_base == {"z": 2, "a": 3, "m": 5, "gone": "kept"}


def test_missing_keys_on_a_side_read_as_blank():
    result = merge([TWO], {"f": "old"}, {}, {"f": "old"}, policy="priority")
    assert result.to_erp == {"f": None}


def test_duplicate_rules_union_directions():
    rules = [FieldRule("f", True, False), FieldRule("f", False, True)]
    result = merge(rules, {"f": "old"}, {"f": "new"}, {"f": "old"}, policy="priority")
    assert result.to_erp == {"f": "new"}


def test_booleans_do_not_equal_numbers():
    result = merge([TWO], {"f": 1}, {"f": True}, {"f": 1}, policy="priority")
    assert result.to_erp == {"f": True}


def test_nan_equals_nan():
    nan = float("nan")
    result = merge([TWO], {"f": nan}, {"f": nan}, {"f": float("nan")}, policy="priority")
    assert not result.changed


def test_unknown_policy_or_mode_raises():
    with pytest.raises(ValueError, match="conflict policy"):
        merge([TWO], {}, {}, {}, policy="loudest")
    with pytest.raises(ValueError, match="merge mode"):
        merge([TWO], {}, {}, {}, policy="crm", mode="sideways")


def test_no_rules_is_a_no_op():
    result = merge([], {"a": 1}, {"a": 2}, {"a": 3}, policy="crm")
    assert result == MergeResult(new_base={"a": 1})


def test_inputs_are_not_modified():
    base, crm, erp = {"f": "old"}, {"f": "c"}, {"f": "e"}
    result = merge([TWO], base, crm, erp, policy="crm")
    apply(result, crm, erp)
    assert base == {"f": "old"} and crm == {"f": "c"} and erp == {"f": "e"}


def test_apply():
    result = MergeResult(to_crm={"a": 1}, to_erp={"b": None})
    new_crm, new_erp = apply(result, {"a": 0, "x": 9}, {"b": "v"})
    assert new_crm == {"a": 1, "x": 9} and new_erp == {"b": None}


def test_changed_property():
    assert not MergeResult().changed
    assert MergeResult(to_crm={"a": 1}).changed
    assert MergeResult(to_erp={"a": None}).changed
    assert not MergeResult(new_base={"a": 1}).changed


def test_second_run_is_a_no_op():
    rules = [FieldRule("a", True, True), FieldRule("b", False, True), FieldRule("c", True, False)]
    base = {"a": "x"}
    crm, erp = {"a": "1", "b": "2", "c": "3"}, {"a": "4", "b": "5", "c": "6"}
    first = merge(rules, base, crm, erp, policy="newest")
    crm, erp = apply(first, crm, erp)
    second = merge(rules, first.new_base, crm, erp, policy="newest")
    assert not second.changed and second.conflicts == [] and second.new_base == first.new_base


# ----------------------------------------------------------------------------------------- record_hash


def test_record_hash_is_order_independent_and_sensitive():
    assert record_hash({"a": 1, "b": None}) == record_hash({"b": None, "a": 1})
    assert record_hash({"a": 1}) != record_hash({"a": 2})
    assert record_hash({"a": 1}) != record_hash({"a": "1"})
    assert record_hash({}) == record_hash({})
    assert len(record_hash({"a": "æøå"})) == 64


def test_record_hash_is_total():
    record_hash({"a": datetime(2026, 1, 1), "b": {1, 2}, 3: object.__new__(object), "n": {1: 2, "x": 3}})
    record_hash({"nan": float("nan"), "s": "\ud800"})


@pytest.mark.parametrize("policy", ["crm", "erp", "priority", "newest"])
def test_winning_side_is_the_side_merge_gives_a_two_way_conflict(policy):
    """The API's Connect without picks settles differences by the same rule as a sync's conflict."""
    earlier, later = datetime(2026, 12, 1, 10, 0), datetime(2026, 12, 1, 11, 0)
    for crm_rank, erp_rank, crm_at, erp_at in ((0, 1, earlier, later), (1, 0, later, earlier), (0, 1, None, later)):
        result = merge([FieldRule("X", True, True)], {}, {"X": "crm"}, {"X": "erp"}, policy=policy,
                       crm_rank=crm_rank, erp_rank=erp_rank, crm_changed_at=crm_at, erp_changed_at=erp_at)
        side, _why = winning_side(policy, crm_rank=crm_rank, erp_rank=erp_rank, crm_changed_at=crm_at,
                                  erp_changed_at=erp_at)
        assert ("X" in result.to_erp) == (side == "crm") and ("X" in result.to_crm) == (side == "erp")
    with pytest.raises(ValueError):
        winning_side("whoever")
