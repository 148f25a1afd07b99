"""Threshold rules evaluated over stored values (issue 6).

A rule fires once its condition has held, value after value, for at least
`for_seconds` by the values' own timestamps, and resolves at the first value
for which it does not. The state this needs sits in the rule's row
(migrations/0005_alerts.sql); this module only computes transitions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from common.db import AlertOutcome, AlertRule, MetricValue

FIRING, RESOLVED = "firing", "resolved"


def condition_holds(rule: AlertRule, value: float) -> bool:
    if rule.condition == "above":
        return value > rule.threshold
    return value < rule.threshold


def step(rule: AlertRule, value: float, ts: datetime) -> tuple[AlertRule, str | None]:
    """The rule after one value, and the transition it caused (FIRING, RESOLVED or None)."""
    if rule.evaluated_ts is not None and ts <= rule.evaluated_ts:
        return rule, None  # late or repeated: the state already accounts for newer values
    if not condition_holds(rule, value):
        after = replace(rule, state="ok", condition_since=None, evaluated_ts=ts)
        return after, RESOLVED if rule.state == FIRING else None
    since = rule.condition_since or ts
    after = replace(rule, condition_since=since, evaluated_ts=ts)
    if rule.state != FIRING and (ts - since).total_seconds() >= rule.for_seconds:
        return replace(after, state=FIRING), FIRING
    return after, None


def evaluate(rules: Sequence[AlertRule], values: Mapping[int, Sequence[MetricValue]]) -> AlertOutcome:
    """Each rule stepped through its metric's new values, oldest first."""
    updated: list[AlertRule] = []
    events: list[tuple[int, str, float, datetime]] = []
    for rule in rules:
        current = rule
        for item in sorted(values.get(rule.metric_id, ()), key=lambda v: (v.ts, v.id)):
            current, transition = step(current, item.value, item.ts)
            if transition is not None:
                events.append((rule.id, transition, item.value, item.ts))
        if current != rule:
            updated.append(current)
    return updated, events
