"""The shipped alerting rules and Grafana dashboard: well formed, and reading real metrics.

Every metric an alert or a panel reads must be one a running host serves at ``/metrics``
(a renamed metric would otherwise silence its alert for good).  Where Debian's ``promtool``
is installed (``.ci/run`` installs it), the rules are checked by it and three alerts are
unit-tested with ``promtool test rules``: they fire on the series they are meant for.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.cli_support import jobtrail
from tests.host_support import running_host
from tests.needs import missing
from workers import monitoring
from workers.dashboard import overview

RULES: dict[str, Any] = yaml.safe_load(monitoring.text(monitoring.ALERTS))
DASHBOARD: dict[str, Any] = json.loads(monitoring.text(monitoring.DASHBOARD))
SUFFIXES = ("_total", "_bucket", "_count", "_sum", "_created")


def _rules() -> list[dict[str, Any]]:
    return [rule for group in RULES["groups"] for rule in group["rules"]]


def _panel_exprs() -> list[str]:
    return [t["expr"] for panel in DASHBOARD["panels"] for t in panel["targets"]]


def _families(expr: str) -> set[str]:
    names = set(re.findall(r"\bjobtrail_[a-z_]+", expr))
    return {next((n.removesuffix(s) for s in SUFFIXES if n.endswith(s)), n) for n in names}


def test_every_rule_names_its_severity_and_says_what_to_do() -> None:
    rules = _rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names)) and len(names) >= 8
    expected = {
        "JobtrailJobTypeFailing",
        "JobtrailOldestPendingJobTooOld",
        "JobtrailRelayBacklog",
        "JobtrailProjectionLag",
        "JobtrailLogReadersHeldBack",
        "JobtrailBackgroundTaskDown",
        "JobtrailNotificationsFailing",
    }
    assert expected <= set(names), "the alerts the issue asks for"
    for rule in rules:
        assert re.fullmatch(r"Jobtrail[A-Z][A-Za-z]+", rule["alert"])
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"] and len(rule["annotations"]["description"]) > 60
        assert _families(rule["expr"]), f"{rule['alert']} reads no jobtrail metric"


def test_the_stale_anchors_alert_and_the_dashboard_overview_share_one_threshold() -> None:
    (rule,) = [r for r in _rules() if r["alert"] == "JobtrailAuditAnchorsStale"]
    (seconds,) = re.findall(r"jobtrail_audit_oldest_unanchored_seconds\)\s*>\s*(\d+)", rule["expr"])
    assert int(seconds) == overview.ANCHORS_STALE_AFTER.total_seconds()


def test_the_dashboard_is_grafana_json_with_a_chosen_prometheus_source() -> None:
    panels = DASHBOARD["panels"]
    assert DASHBOARD["uid"] and DASHBOARD["title"] == "jobtrail"
    assert len({p["id"] for p in panels}) == len(panels) >= 10
    (source,) = DASHBOARD["templating"]["list"]
    assert source["type"] == "datasource" and source["query"] == "prometheus"
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"] and all(t["expr"] and t["refId"] for t in panel["targets"])


async def test_every_metric_the_alerts_and_the_dashboard_read_is_served_by_a_host(
    db_dsn: str,
) -> None:
    async with running_host(db_dsn) as host:
        await host.dispatcher.enqueue("test-job", {})
        async with (
            aiohttp.ClientSession() as session,
            session.get(host.url + "/metrics") as response,
        ):
            assert response.status == 200
            served = {f.name for f in text_string_to_metric_families(await response.text())}
    read = set().union(*(_families(e) for e in [r["expr"] for r in _rules()] + _panel_exprs()))
    assert read - served == set(), "alerts or panels read metrics no host serves"


async def test_the_cli_prints_the_shipped_files(db_dsn: str) -> None:
    alerts = await jobtrail(db_dsn, "monitoring", "alerts")
    board = await jobtrail(db_dsn, "monitoring", "dashboard")
    assert alerts.code == 0 and alerts.out == monitoring.text(monitoring.ALERTS)
    assert board.code == 0 and json.loads(board.out) == DASHBOARD


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        missing("promtool is not installed (apt-get install prometheus)")
    return found


def test_promtool_accepts_the_rules(tmp_path: Path) -> None:
    rules = tmp_path / "alerts.yml"
    rules.write_text(monitoring.text(monitoring.ALERTS))
    done = subprocess.run(
        [_promtool(), "check", "rules", str(rules)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in done.stdout


PROMTOOL_TESTS = """
rule_files: [alerts.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'jobtrail_deliveries_total{job_type="send-email",outcome="failed",instance="a"}'
        values: '0+30x40'
      - series: 'jobtrail_deliveries_total{job_type="send-email",outcome="completed",instance="a"}'
        values: '0+30x40'
      - series: 'jobtrail_deliveries_total{job_type="report",outcome="completed",instance="a"}'
        values: '0+30x40'
      - series: 'jobtrail_background_task_up{task="relay",instance="a"}'
        values: '1 1 0 0 0 0 0 0'
      - series: 'jobtrail_background_task_up{task="sweeper",instance="a"}'
        values: '1 1 1 1 1 1 1 1'
      - series: 'jobtrail_relay_backlog_events{instance="a"}'
        values: '10 5000 5000 5000 5000 5000 5000 5000'
      - series: 'jobtrail_audit_oldest_unanchored_seconds{instance="a"}'
        values: '0 30 0 30 0 30 0 30 0 30 0 60+60x40'
    alert_rule_test:
      - eval_time: 30m
        alertname: JobtrailJobTypeFailing
        exp_alerts:
          - exp_labels: {severity: warning, job_type: send-email}
            exp_annotations:
              summary: "send-email: 50% of attempts fail"
              description: >-
                More than 20 % of the send-email attempts failed over 10 minutes.
                `jobtrail jobs list --type send-email --status failed` shows them,
                `jobtrail jobs show ID` their errors; fix the cause, then `jobtrail jobs replay`.
      - eval_time: 5m
        alertname: JobtrailBackgroundTaskDown
        exp_alerts:
          - exp_labels: {severity: critical, task: relay, instance: a}
            exp_annotations:
              summary: "a: background task relay is down"
              description: >-
                The host restarts a failed task with backoff; this one has not been running
                for two minutes. The host's /readyz is failing meanwhile (or, for
                audit-anchors, lists it under "degraded"); its log, /readyz and `jobtrail
                projections status` / `jobtrail relay status` give the error.
      - eval_time: 3m
        alertname: JobtrailBackgroundTaskDown
        exp_alerts: []
      - eval_time: 24m
        alertname: JobtrailAuditAnchorsStale
        exp_alerts: []
      - eval_time: 32m
        alertname: JobtrailAuditAnchorsStale
        exp_alerts:
          - exp_labels: {severity: critical}
            exp_annotations:
              summary: "an event has waited 22m 0s for an audit anchor"
              description: >-
                The tamper-evident log's signed anchors stopped: events written since can be
                changed unseen. /readyz lists audit-anchors under "degraded" with its error
                (usually a JOBTRAIL_AUDIT_KEY that did not sign the last anchor: set it back,
                or list the old key in JOBTRAIL_AUDIT_PREVIOUS_KEYS); `jobtrail audit verify`
                counts what is not anchored.
      - eval_time: 7m
        alertname: JobtrailRelayBacklog
        exp_alerts:
          - exp_labels: {severity: warning}
            exp_annotations:
              summary: "the relay is 5000 events behind the log"
              description: >-
                Dispatched jobs are not reaching QStash fast enough. `jobtrail relay status`
                shows the leader and its last error; jobtrail_qstash_throttled_total and
                jobtrail_qstash_wait_seconds show QStash's own limits.
"""


def test_promtool_unit_tests_fire_the_alerts_on_their_series(tmp_path: Path) -> None:
    (tmp_path / "alerts.yml").write_text(monitoring.text(monitoring.ALERTS))
    (tmp_path / "tests.yml").write_text(textwrap.dedent(PROMTOOL_TESTS))
    done = subprocess.run(
        [_promtool(), "test", "rules", "tests.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
