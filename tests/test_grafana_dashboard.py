"""examples/grafana-dashboard.json (issue 18): every query uses metrics the gateway exports, with labels they have."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
from agentgateway.telemetry import FAMILIES

DASHBOARD = Path(__file__).parent.parent / "examples" / "grafana-dashboard.json"
# Exported by the main process beside the worker families (telemetry/_server.py).
MAIN_PROCESS = {"agentgateway_build_info", "agentgateway_config_synchronized", "agentgateway_workers",
                "agentgateway_workers_ready"}  # fmt: skip


def exported_series() -> set[str]:
    names = set(MAIN_PROCESS)
    for family in FAMILIES.values():
        if family.kind == "counter":
            names.add(family.name + "_total")
        elif family.kind == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_sum", "_count"))
    return names


def queries() -> list[str]:
    dashboard = orjson.loads(DASHBOARD.read_bytes())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def test_every_query_uses_an_exported_metric() -> None:
    exported = exported_series()
    found = queries()
    assert len(found) >= 10
    for expr in found:
        metrics = set(re.findall(r"\b(agentgateway_[a-z_]+)", expr))
        assert metrics, f"no agentgateway metric in {expr!r}"
        assert metrics <= exported, (expr, metrics - exported)


def test_the_dashboard_covers_what_operators_asked_for() -> None:
    text = " ".join(queries())
    for needed in ("agentgateway_requests_total", "histogram_quantile", "time_to_first_token", "token_usage",
                   "cost_usd_total", "upstream_attempts_total", "rate_limit_rejections_total"):  # fmt: skip
        assert needed in text, needed
