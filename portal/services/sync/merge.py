"""The three-way merge of one linked record: what to write where, and who wins a conflict.

Pure functions: no Flask, no database, no I/O. This docstring is the product's written conflict rule.

Inputs
======
Values are **normalized ERP representations** (``portal.services.values.normalize_erp``), keyed by ERP field key:

* ``crm`` -- the CRM record's mapped fields, converted to ERP form by the engine;
* ``erp`` -- the ERP actor's ``FieldValues``;
* ``base`` -- the values both sides agreed on at the end of the previous sync (``Link.base``).

A key missing from ``crm`` or ``erp`` reads as ``None`` (blank): the engine must pass every mapped field it
merges. A key missing from ``base`` means "never agreed" (e.g. first sync after linking), which is different
from an agreed blank (``base[key] is None``). Values are compared with ``==`` (``None == None``); booleans never
equal numbers, and NaN equals NaN so that a stray NaN cannot cause endless rewrites.

Each ``FieldRule`` says which directions are mapped for one field: ``to_crm`` (ERP -> CRM, ``>``) and ``to_erp``
(CRM -> ERP, ``<``). A key listed in several rules gets the union of their directions. Keys of ``base`` that no
rule mentions are passed through to ``new_base`` untouched.

Normal sync (``mode='sync'``), per field, with ``b`` = base, ``c`` = CRM value, ``e`` = ERP value
=================================================================================================================
1. **Agree** -- ``c == e``: nothing is written (equal values are never rewritten); ``new_base = c``.
2. **Only the CRM changed** -- ``b`` known, ``e == b``, ``c != b``: if CRM -> ERP is mapped, ``c`` is written to
   the ERP and becomes the base. Otherwise nothing flows and the base stays ``b``: the CRM edit stays *pending*
   (if the direction is enabled later, it flows then), and a later ERP edit of the field is a conflict.
3. **Only the ERP changed** -- ``b`` known, ``c == b``, ``e != b``: the mirror image of 2.
4. **Conflict** -- both changed to different values, or there is no agreed value (``b`` missing) and
   ``c != e``. The winner is decided by, in this order:

   a. neither direction mapped: nothing happens, no conflict is recorded, the base stays as it was;
   b. only CRM -> ERP mapped: the CRM wins ("only CRM -> <ERP> is mapped");
   c. only ERP -> CRM mapped: the ERP wins;
   d. both directions: the connection's conflict policy --

      * ``'crm'``: the CRM wins; ``'erp'``: the ERP wins;
      * ``'priority'``: the side higher on the *Set sync priority* list wins, i.e. the lower rank
        (``crm_rank`` vs ``erp_rank``, 0 = top). Equal ranks: the CRM wins;
      * ``'newest'``: the side with the later change time wins (``crm_changed_at`` vs ``erp_changed_at``; times
        without zone are taken as UTC). Equal or missing times fall back to ``'priority'``. Caveat: the two
        times come from different clocks (the portal's ``updated_at`` and the ERP's ``LastModified``), so clock
        skew between the systems can pick the "wrong" side for edits made close together; they are also
        per-record times, not per-field, so a record edited later in another field counts as the newer one.

   The winning value is written to the other side and becomes the base; a ``Conflict`` is recorded with the
   base, both values, the winner and a human-readable rule (mentioning "no agreed value" when ``b`` was
   missing). A conflict is recorded exactly when a side's differing value is overwritten because of it.

``no_blank=True`` (the "NoBlankValues" variants): a blank winning value (see ``values.is_blank``) never
overwrites a non-blank value on the other side. Nothing is written for that field, no conflict is recorded,
the base keeps its previous value, and the key is listed in ``MergeResult.skipped_blank``.

Resync (``mode='from_crm'`` / ``mode='from_erp'``)
==================================================
One way, ignoring the base and the change times: for every rule with the direction mapped (``to_erp`` for
``from_crm``, ``to_crm`` for ``from_erp``), a source value that differs from the target is written
(respecting ``no_blank``); nothing ever flows the other way and no conflicts are recorded (the admin asked for
the overwrite). ``new_base`` holds the value the two sides now agree on; fields that still differ keep their
previous base.

Guarantees (see tests/unit/test_merge_properties.py)
====================================================
* After a normal sync without ``no_blank``, every two-way field holds the same value on both sides.
* Running the merge again right after applying its result writes nothing and records no conflict.
* An edit made on one side since the previous sync survives on that side, or is the loser of a ``Conflict``
  recorded in this sync. Known limit of any three-way merge: on a one-way or unmapped field the two sides can
  drift apart; an edit that sets a side *back to the agreed base value* is indistinguishable from "unchanged".
* Values never flow in a direction that is not mapped.
* The function never raises for JSON-native values and its output is deterministic (dicts and the conflict list
  follow the order of ``rules``). Only an unknown ``policy`` or ``mode`` raises ``ValueError``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from portal.services.values import is_blank, same_value

__all__ = ["Conflict", "FieldRule", "MergeResult", "POLICIES", "MODES", "PreparedRules", "apply", "merge",
           "merge_prepared", "prepare", "record_hash"]

POLICIES = ("priority", "newest", "crm", "erp")
MODES = ("sync", "from_crm", "from_erp")

_MISSING = object()


@dataclass(frozen=True)
class FieldRule:
    """One mapped ERP field and its directions: ``to_crm`` = ERP -> CRM, ``to_erp`` = CRM -> ERP."""

    key: str
    to_crm: bool
    to_erp: bool


@dataclass(frozen=True)
class Conflict:
    """A field both sides changed (or never agreed on), settled by ``rule``; ``value`` is the winning value.

    ``has_base`` is False when there was no agreed value (``base`` is then ``None``).
    """

    key: str
    base: object
    crm: object
    erp: object
    winner: str  # 'crm' | 'erp'
    value: object
    rule: str
    has_base: bool = True


@dataclass
class MergeResult:
    to_crm: dict[str, object] = field(default_factory=dict)  # field key -> value to write into the CRM
    to_erp: dict[str, object] = field(default_factory=dict)  # field key -> value to write into the ERP
    new_base: dict[str, object] = field(default_factory=dict)  # the base once this plan is applied
    conflicts: list[Conflict] = field(default_factory=list)
    # Fields where no_blank stopped a blank value from overwriting a non-blank one.
    skipped_blank: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """True when anything is to be written to either side (a changed base alone does not count)."""
        return bool(self.to_crm or self.to_erp)


def _utc(moment: object) -> datetime | None:
    if not isinstance(moment, datetime):
        return None
    if moment.tzinfo is None or moment.utcoffset() is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except (OverflowError, ValueError):
        return None


class _Decider:
    """Picks the winner of a conflict on a two-way field and words the rule."""

    def __init__(self, policy, crm_rank, erp_rank, crm_changed_at, erp_changed_at, erp_name) -> None:
        self.policy = policy
        self.crm_rank = crm_rank
        self.erp_rank = erp_rank
        self.crm_at = _utc(crm_changed_at)
        self.erp_at = _utc(erp_changed_at)
        self.erp_name = erp_name or "ERP"

    def label(self, side: str) -> str:
        return "CRM" if side == "crm" else self.erp_name

    def by_priority(self) -> tuple[str, str]:
        try:
            crm_first = bool(self.crm_rank < self.erp_rank)
            erp_first = bool(self.erp_rank < self.crm_rank)
        except TypeError:  # incomparable ranks: treat as equal
            crm_first = erp_first = False
        if crm_first:
            return "crm", f"sync priority: CRM above {self.erp_name}"
        if erp_first:
            return "erp", f"sync priority: {self.erp_name} above CRM"
        return "crm", "equal sync priority: the CRM is preferred"

    def two_way(self) -> tuple[str, str]:
        if self.policy == "crm":
            return "crm", "conflict policy: CRM wins"
        if self.policy == "erp":
            return "erp", f"conflict policy: {self.erp_name} wins"
        if self.policy == "newest":
            if self.crm_at is not None and self.erp_at is not None and self.crm_at != self.erp_at:
                return ("crm" if self.crm_at > self.erp_at else "erp"), "changed most recently"
            both_known = self.crm_at is not None and self.erp_at is not None
            why = "changed at the same time" if both_known else "change times unknown"
            side, text = self.by_priority()
            return side, f"{why}; {text}"
        return self.by_priority()

    def decide(self, rule: FieldRule, has_base: bool) -> tuple[str, str]:
        if rule.to_erp and not rule.to_crm:
            side, why = "crm", f"only CRM \u2192 {self.erp_name} is mapped"
        elif rule.to_crm and not rule.to_erp:
            side, why = "erp", f"only {self.erp_name} \u2192 CRM is mapped"
        else:
            side, why = self.two_way()
        if not has_base:
            why = f"no agreed value; {why}"
        return side, f"{self.label(side)} wins ({why})"


def winning_side(policy: str, *, crm_rank: int = 0, erp_rank: int = 1, crm_changed_at: datetime | None = None,
                 erp_changed_at: datetime | None = None, erp_name: str = "ERP") -> tuple[str, str]:
    """The side ("crm" or "erp") a two-way conflict goes to under ``policy``, and why — the rule ``merge`` applies,
    for callers that settle differences outside a sync (the API's Connect without picks)."""
    policy, _mode = _checked(policy, "sync")
    return _Decider(policy, crm_rank, erp_rank, crm_changed_at, erp_changed_at, erp_name).two_way()


def _rules_by_key(rules: Sequence[FieldRule]) -> dict[str, FieldRule]:
    merged: dict[str, FieldRule] = {}
    for rule in rules:
        old = merged.get(rule.key)
        if old is None:
            merged[rule.key] = FieldRule(rule.key, bool(rule.to_crm), bool(rule.to_erp))
        else:
            merged[rule.key] = FieldRule(rule.key, old.to_crm or bool(rule.to_crm), old.to_erp or bool(rule.to_erp))
    return merged


def _checked(policy: object, mode: object) -> tuple[str, str]:
    policy, mode = str(policy), str(mode)
    if policy not in POLICIES:
        raise ValueError(f"unknown conflict policy {policy!r}")
    if mode not in MODES:
        raise ValueError(f"unknown merge mode {mode!r}")
    return policy, mode


def _blocked(no_blank: bool, value: object, target: object) -> bool:
    return no_blank and is_blank(value) and not is_blank(target)


def merge(
    rules: Sequence[FieldRule],
    base: Mapping,
    crm: Mapping,
    erp: Mapping,
    *,
    policy: str,
    crm_rank: int = 0,
    erp_rank: int = 1,
    crm_changed_at: datetime | None = None,
    erp_changed_at: datetime | None = None,
    no_blank: bool = False,
    mode: str = "sync",
    erp_name: str = "ERP",
) -> MergeResult:
    """Plan the writes that bring one linked record in sync; see the module docstring for the rules.

    ``erp_name`` (the connection's name) is only used in the conflict rule texts.
    """
    policy, mode = _checked(policy, mode)
    base, crm, erp = base or {}, crm or {}, erp or {}
    decider = _Decider(policy, crm_rank, erp_rank, crm_changed_at, erp_changed_at, erp_name)
    result = MergeResult(new_base=dict(base))

    for key, rule in _rules_by_key(rules).items():
        b = base.get(key, _MISSING)
        c = crm.get(key)
        e = erp.get(key)

        if same_value(c, e):
            result.new_base[key] = c
            continue

        if mode != "sync":
            from_crm = mode == "from_crm"
            allowed = rule.to_erp if from_crm else rule.to_crm
            source, target = (c, e) if from_crm else (e, c)
            if not allowed:
                continue
            if _blocked(no_blank, source, target):
                result.skipped_blank.append(key)
                continue
            (result.to_erp if from_crm else result.to_crm)[key] = source
            result.new_base[key] = source
            continue

        has_base = b is not _MISSING
        if has_base and same_value(e, b):  # only the CRM changed
            if rule.to_erp:
                if _blocked(no_blank, c, e):
                    result.skipped_blank.append(key)
                else:
                    result.to_erp[key] = c
                    result.new_base[key] = c
            continue
        if has_base and same_value(c, b):  # only the ERP changed
            if rule.to_crm:
                if _blocked(no_blank, e, c):
                    result.skipped_blank.append(key)
                else:
                    result.to_crm[key] = e
                    result.new_base[key] = e
            continue

        # Both changed, or never agreed: a conflict.
        if not rule.to_crm and not rule.to_erp:
            continue
        winner, text = decider.decide(rule, has_base)
        value, target = (c, e) if winner == "crm" else (e, c)
        if _blocked(no_blank, value, target):
            result.skipped_blank.append(key)
            continue
        (result.to_erp if winner == "crm" else result.to_crm)[key] = value
        result.new_base[key] = value
        result.conflicts.append(
            Conflict(
                key=key,
                base=b if has_base else None,
                crm=c,
                erp=e,
                winner=winner,
                value=value,
                rule=text,
                has_base=has_base,
            )
        )
    return result


# ------------------------------------------------------------------------------------ merging many records


class PreparedRules:
    """Rules merged by key once (the first step of every ``merge`` call), for merging many records with the same
    rules: ``merge_prepared(prepare(rules), …)`` returns exactly what ``merge(rules, …)`` returns."""

    __slots__ = ("by_key", "items")

    def __init__(self, rules: Sequence[FieldRule]) -> None:
        self.by_key: dict[str, FieldRule] = _rules_by_key(rules)
        self.items: tuple[tuple[str, bool, bool], ...] = tuple(
            (key, rule.to_crm, rule.to_erp) for key, rule in self.by_key.items())


def prepare(rules: Sequence[FieldRule]) -> PreparedRules:
    return PreparedRules(rules)


# Exact types for which ``a == b`` is what ``same_value`` decides when both values have that type (no bool/number mix,
# no NaN, no exotic ``__eq__``); anything else goes through ``same_value``.
_PLAIN_TYPES = frozenset({str, int, type(None)})


def merge_prepared(
    prepared: PreparedRules,
    base: Mapping,
    crm: Mapping,
    erp: Mapping,
    *,
    policy: str,
    crm_rank: int = 0,
    erp_rank: int = 1,
    crm_changed_at: datetime | None = None,
    erp_changed_at: datetime | None = None,
    no_blank: bool = False,
    mode: str = "sync",
    erp_name: str = "ERP",
) -> MergeResult:
    """``merge`` for rules prepared once (``prepare``): the same rule, the same result, less work per record —
    plain values (text, integers, blanks) are compared inline, the conflict decider is only built when a field
    is in conflict, and a field whose sides agree is settled without further checks. The equivalence with
    ``merge`` is property-tested (tests/unit/test_engine_fastpath.py)."""
    policy, mode = _checked(policy, mode)
    base, crm, erp = base or {}, crm or {}, erp or {}
    decider = None
    new_base = dict(base)
    to_crm: dict[str, object] = {}
    to_erp: dict[str, object] = {}
    conflicts: list[Conflict] = []
    skipped_blank: list[str] = []
    plain = _PLAIN_TYPES
    missing = _MISSING
    sync = mode == "sync"

    for key, rule_to_crm, rule_to_erp in prepared.items:
        c = crm.get(key)
        e = erp.get(key)
        kind = type(c)
        if kind is type(e) and kind in plain:
            if c == e:
                new_base[key] = c
                continue
        elif same_value(c, e):
            new_base[key] = c
            continue

        if not sync:
            from_crm = mode == "from_crm"
            allowed = rule_to_erp if from_crm else rule_to_crm
            if not allowed:
                continue
            source, target = (c, e) if from_crm else (e, c)
            if no_blank and is_blank(source) and not is_blank(target):
                skipped_blank.append(key)
                continue
            (to_erp if from_crm else to_crm)[key] = source
            new_base[key] = source
            continue

        b = base.get(key, missing)
        has_base = b is not missing
        if has_base:
            kind = type(b)
            if kind is type(e) and kind in plain:
                erp_kept = b == e
            else:
                erp_kept = same_value(e, b)
            if erp_kept:  # only the CRM changed
                if rule_to_erp:
                    if no_blank and is_blank(c) and not is_blank(e):
                        skipped_blank.append(key)
                    else:
                        to_erp[key] = c
                        new_base[key] = c
                continue
            if kind is type(c) and kind in plain:
                crm_kept = b == c
            else:
                crm_kept = same_value(c, b)
            if crm_kept:  # only the ERP changed
                if rule_to_crm:
                    if no_blank and is_blank(e) and not is_blank(c):
                        skipped_blank.append(key)
                    else:
                        to_crm[key] = e
                        new_base[key] = e
                continue

        # Both changed, or never agreed: a conflict.
        if not rule_to_crm and not rule_to_erp:
            continue
        if decider is None:
            decider = _Decider(policy, crm_rank, erp_rank, crm_changed_at, erp_changed_at, erp_name)
        winner, text = decider.decide(prepared.by_key[key], has_base)
        value, target = (c, e) if winner == "crm" else (e, c)
        if no_blank and is_blank(value) and not is_blank(target):
            skipped_blank.append(key)
            continue
        (to_erp if winner == "crm" else to_crm)[key] = value
        new_base[key] = value
        conflicts.append(Conflict(key=key, base=b if has_base else None, crm=c, erp=e, winner=winner, value=value,
                                  rule=text, has_base=has_base))
    return MergeResult(to_crm=to_crm, to_erp=to_erp, new_base=new_base, conflicts=conflicts,
                       skipped_blank=skipped_blank)


def apply(result: MergeResult, crm: Mapping, erp: Mapping) -> tuple[dict, dict]:
    """The two sides after the writes of ``result`` (new dicts; the arguments are not modified)."""
    new_crm = dict(crm)
    new_crm.update(result.to_crm)
    new_erp = dict(erp)
    new_erp.update(result.to_erp)
    return new_crm, new_erp


def _json_default(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return sorted(repr(item) for item in value)
    return repr(value)


def record_hash(values: Mapping) -> str:
    """SHA-256 (hex) of the canonical JSON of ``values`` (sorted keys, compact): a cheap "unchanged?" check.

    Keys are compared as strings; ``1`` and ``1.0`` hash differently (normalized values have one type per field).
    """
    canonical = {str(key): value for key, value in (values or {}).items()}
    try:
        text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default)
    except (TypeError, ValueError):  # e.g. nested dicts with mixed key types
        text = repr(sorted((key, repr(value)) for key, value in canonical.items()))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
