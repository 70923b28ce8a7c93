"""Sync health without an app: the state decision (portal.services.sync_health.decide), the chart's data series and
the SVG chart macro (templates/_macros/charts.html): bars in proportion, an image with a title, a data table."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from jinja2 import Environment, FileSystemLoader

from portal.services.sync_health import (
    CHART_DAYS,
    Facts,
    State,
    ago,
    build_chart,
    chart_days,
    decide,
    stale_after,
)

NOW = datetime(2026, 12, 12, 12, 0)
HEALTHY = Facts(active=True, auto_sync=True, interval_seconds=300, last_status="succeeded",
                last_success_at=NOW - timedelta(minutes=4), changed_at=NOW - timedelta(days=30))
BREAKER = "Fake ERP is not answering since 11:58 UTC; retrying at 12:01 UTC."


def state(**changes) -> State:
    return decide(replace(HEALTHY, **changes), NOW).state


def test_healthy():
    verdict = decide(HEALTHY, NOW)
    assert verdict.state == State.HEALTHY and verdict.label == "Healthy" and verdict.tone == "ok"


@pytest.mark.parametrize("changes, expected", [
    ({"last_status": "partial"}, State.DEGRADED),
    ({"open_issues": 3}, State.DEGRADED),
    ({"last_status": "failed", "last_error": "The ERP licence has expired."}, State.FAILING),
    ({"last_status": "failed", "open_issues": 3}, State.FAILING),  # failing wins over degraded
    ({"last_success_at": NOW - timedelta(minutes=16)}, State.FAILING),  # 3 intervals = 15 min (the floor)
    ({"last_success_at": NOW - timedelta(minutes=14)}, State.HEALTHY),
    ({"last_success_at": NOW - timedelta(minutes=16), "running": True}, State.HEALTHY),  # a run is under way
    ({"active": False}, State.PAUSED),
    ({"active": False, "breaker": BREAKER}, State.PAUSED),  # an inactive connection is paused, whatever else
    ({"auto_sync": False}, State.PAUSED),
    ({"auto_sync": False, "last_status": "failed"}, State.PAUSED),  # nothing runs until someone asks
    ({"breaker": BREAKER}, State.BREAKER_OPEN),
    ({"breaker": BREAKER, "auto_sync": False}, State.BREAKER_OPEN),  # the breaker says more than "off"
    ({"breaker": BREAKER, "last_status": "failed"}, State.BREAKER_OPEN),
])
def test_each_state(changes, expected):
    assert state(**changes) == expected


def test_the_reasons_say_why_and_what_to_do():
    assert decide(replace(HEALTHY, last_status="failed", last_error="The ERP licence has expired."),
                  NOW).reason == "The last run failed: The ERP licence has expired."
    assert decide(replace(HEALTHY, open_issues=1), NOW).reason.startswith("1 record with open sync issues")
    assert decide(replace(HEALTHY, breaker=BREAKER), NOW).reason.startswith(BREAKER)
    stale = decide(replace(HEALTHY, last_success_at=NOW - timedelta(hours=2, minutes=5)), NOW)
    assert stale.reason.startswith("No successful run for 2 h 5 min (one is due every 5 min)")
    assert "Activate" in decide(replace(HEALTHY, active=False), NOW).reason


def test_no_successful_run_is_measured_from_the_connections_last_change():
    never = replace(HEALTHY, last_status=None, last_success_at=None)
    assert decide(replace(never, changed_at=NOW - timedelta(minutes=5)), NOW).reason == "No run yet."
    old = decide(replace(never, changed_at=NOW - timedelta(hours=1)), NOW)
    assert old.state == State.FAILING and old.reason.startswith("No successful run yet")
    assert decide(replace(never, changed_at=None), NOW).state == State.HEALTHY


def test_a_long_interval_waits_three_intervals():
    assert stale_after(60) == timedelta(minutes=15)
    assert stale_after(3600) == timedelta(hours=3)
    hourly = replace(HEALTHY, interval_seconds=3600)
    assert decide(replace(hourly, last_success_at=NOW - timedelta(hours=2, minutes=59)), NOW).state == State.HEALTHY
    assert decide(replace(hourly, last_success_at=NOW - timedelta(hours=3, minutes=1)), NOW).state == State.FAILING


def test_ago():
    assert [ago(timedelta(seconds=n)) for n in (5, 125, 3600, 3725, 200000)] == [
        "5 s", "2 min", "1 h", "1 h 2 min", "2 days"]


# -------------------------------------------------------------------------------------------------------- chart


def test_the_data_series_fill_missing_days_with_zero():
    days = chart_days(date(2026, 12, 12))
    assert len(days) == CHART_DAYS and days[0] == date(2026, 11, 29) and days[-1] == date(2026, 12, 12)
    chart = build_chart(days, {date(2026, 12, 12): {"runs": 4, "errors": 1}, date(2026, 12, 1): {"runs": 2}})
    runs = chart.series[0]
    assert runs.key == "runs" and runs.values[-1] == 4 and runs.values[2] == 2 and runs.total == 6 and runs.peak == 4
    assert [s.key for s in chart.series] == ["runs", "failed", "to_crm", "to_erp", "conflicts", "errors"]
    assert chart.rows()[-1] == (date(2026, 12, 12), [4, 0, 0, 0, 0, 1])
    assert chart.summary().startswith("6 runs, 0 failed runs, 0 fields to the crm")


def render_chart(chart, title="Demo ERP: sync activity, last 14 days") -> str:
    env = Environment(loader=FileSystemLoader(Path(__file__).resolve().parents[2] / "templates"), autoescape=True)
    template = env.from_string('{% from "_macros/charts.html" import daily_chart %}'
                               "{{ daily_chart(chart, 'c1', title) }}")
    return template.render(chart=chart, title=title)


def test_the_svg_bars_are_in_proportion_and_the_chart_is_accessible():
    days = chart_days(date(2026, 12, 12))
    counts = {days[0]: {"runs": 1}, days[1]: {"runs": 2}, days[2]: {"runs": 4}, days[5]: {"to_crm": 1000}}
    html = render_chart(build_chart(days, counts))
    runs_row = html[html.index('class="chart-row chart-runs"'):html.index("</g>")]
    heights = [float(h) for h in re.findall(r'<rect [^>]*height="([\d.]+)" class="chart-bar"', runs_row)]
    assert heights == [pytest.approx(17 / 4), pytest.approx(17 / 2), pytest.approx(17)]
    values = re.findall(r'data-value="(\d+)"', runs_row)
    assert values == ["1", "2", "4"]  # a day with nothing has no bar, only the base line
    to_crm = html[html.index('class="chart-row chart-to_crm"'):]
    assert re.search(r'height="17.00" class="chart-bar" data-value="1000"', to_crm)  # each row on its own scale
    assert ">1,000</text>" in to_crm
    # an image with a title and a description, and the numbers as a table
    assert re.search(r'<svg [^>]*role="img" aria-labelledby="c1-title c1-desc"', html)
    assert '<title id="c1-title">Demo ERP: sync activity, last 14 days</title>' in html
    assert "Totals: 7 runs, 0 failed runs, 1,000 fields to the crm" in html
    table = html[html.index('<div class="sr-only">'):]
    assert "<caption>Demo ERP: sync activity, last 14 days, per day</caption>" in table
    assert table.count('<th scope="row">') == 14 and '<th scope="col">Conflicts</th>' in table
    assert '<tr><th scope="row">2026-12-01</th><td>4</td><td>0</td>' in table
    assert "<title>2026-12-01: 4 runs</title>" in html


def test_an_empty_chart_has_no_bars_and_escapes_the_title():
    html = render_chart(build_chart(chart_days(date(2026, 12, 12)), {}), title="<O'Hara & Co>")
    assert "<rect" not in html and "&lt;O&#39;Hara &amp; Co&gt;" in html
