"""The dashboard (infra/grafana) and the Prometheus configuration and alert rules
(infra/prometheus): every metric and label they use is one a service defines, the dashboard
is one Grafana can load, the scrape targets are the ports `just up` and `just cluster` use,
and promtool (the blackbox exporter for its modules) accepts them where installed."""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
import subprocess
from collections.abc import Iterator
from typing import Any

import yaml
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

from aitbc_infra import cluster, layout
from aitbc_runtime.tallies import Tally
from tests.prometheus_tools import BLACKBOX, PROMETHEUS, PROMTOOL, needs_blackbox, needs_promtool

DASHBOARD = PROMETHEUS.parent / "grafana" / "dashboards" / "aitbc.json"
CONFIGS = ("prometheus.yml", "cluster.yml")  # `just up`'s and `just cluster`'s

# Series that are no service's: Prometheus's own per target, and the blackbox exporter's
OUTSIDE = {"up": set(), "probe_success": set()}
# Labels Prometheus adds to every series it scrapes
TARGET_LABELS = {"job", "instance"}

SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum"),
}


def _import_every_module() -> None:
    """Every module of the services and the runtime, so that each metric wherever it is
    defined is in prometheus_client's registry (not the Alembic migrations: scripts)."""
    for package in ("aitbc_runtime", "aitbc_gate", "aitbc_api", "aitbc_keys", "aitbc_usage"):
        root = importlib.import_module(package)
        for module in pkgutil.walk_packages(root.__path__, f"{package}."):
            if ".migrations" not in module.name:
                importlib.import_module(module.name)


def _series(name: str, kind: str, labels: tuple[str, ...]) -> Iterator[tuple[str, set[str]]]:
    for suffix in SUFFIXES[kind]:
        yield name + suffix, set(labels) | ({"le"} if suffix == "_bucket" else set())


def defined_series() -> dict[str, set[str]]:
    """Every series name the services can serve, with its label names."""
    _import_every_module()
    found: dict[str, set[str]] = {}
    # The registry's collectors (a private table of prometheus_client's: the public API
    # gives no label names of a metric that has no child yet)
    for collector in REGISTRY._collector_to_names:
        if isinstance(collector, MetricWrapperBase):
            family = collector.describe()[0]
            labels = tuple(collector._labelnames)
            found.update(_series(family.name, family.type, labels))
        elif isinstance(collector, Tally):  # counted per request (aitbc_runtime.tallies)
            found.update(_series(collector.name, "counter", collector.labelnames))
    return found


def dashboard_panels() -> list[dict[str, Any]]:
    model = json.loads(DASHBOARD.read_text())
    return [panel for panel in model["panels"] if panel["type"] != "row"]


def rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def expressions() -> list[tuple[str, str]]:
    """(where, PromQL) of every dashboard query and every rule."""
    queries = [
        (f"panel {panel['title']!r}", target["expr"])
        for panel in dashboard_panels()
        for target in panel["targets"]
    ]
    return queries + [(f"rule {rule['alert']}", rule["expr"]) for rule in rules()]


def test_every_metric_and_label_used_is_one_a_service_defines() -> None:
    known = {**defined_series(), **OUTSIDE}
    for where, expr in expressions():
        names = set(re.findall(r"\b(aitbc_\w+|up|probe_success)\b(?!\s*\()", expr))
        assert names, f"{where} reads no metric: {expr}"
        unknown = {name for name in names if name not in known}
        assert not unknown, f"{where} uses {unknown}, which no service defines"
        for name, matchers in re.findall(r"\b(\w+)\{([^}]*)\}", expr):
            used = set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers))
            assert used <= known[name] | TARGET_LABELS, f"{where}: {name} has no {used}"
        labelled = set().union(*(known[name] for name in names)) | TARGET_LABELS
        for grouping in re.findall(r"\bby\s*\(([^)]*)\)", expr):
            by = {label.strip() for label in grouping.split(",") if label.strip()}
            assert by <= labelled, f"{where} groups by {by - labelled}, which nothing has"


def test_the_dashboard_loads_and_every_panel_has_a_datasource_and_a_query() -> None:
    model = json.loads(DASHBOARD.read_text())
    [variable] = [v for v in model["templating"]["list"] if v["type"] == "datasource"]
    assert variable["name"] == "datasource" and variable["query"] == "prometheus"
    source = {"type": "prometheus", "uid": "${datasource}"}
    panels = dashboard_panels()
    assert len(panels) >= 20
    assert len({panel["id"] for panel in model["panels"]}) == len(model["panels"])
    for panel in panels:
        assert panel["datasource"] == source, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip() and target["datasource"] == source, panel["title"]
        place = panel["gridPos"]
        assert place["x"] + place["w"] <= 24 and place["h"] > 0, panel["title"]


def test_every_alert_says_what_and_why_and_waits_a_while() -> None:
    for rule in rules():
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]


def _targets(config: str, job: str) -> list[int]:
    loaded = yaml.safe_load((PROMETHEUS / config).read_text())
    [scrape] = [s for s in loaded["scrape_configs"] if s["job_name"] == job]
    return [int(t.rsplit(":", 1)[1]) for c in scrape["static_configs"] for t in c["targets"]]


def test_the_scrape_targets_are_the_ports_just_up_and_just_cluster_use() -> None:
    up = {
        "aitbc-api": [layout.DEFAULT_API_METRICS_PORT],
        "aitbc-keys": [layout.DEFAULT_KEYS_METRICS_PORT],
        "aitbc-usage": [layout.DEFAULT_USAGE_METRICS_PORT],
        "nats": [layout.DEFAULT_NATS_PORT],
    }
    many = {
        job: list(cluster.PORTS[f"CLUSTER_{name}_PORTS"])
        for job, name in (
            ("aitbc-api", "API_METRICS"),
            ("aitbc-keys", "KEYS_METRICS"),
            ("aitbc-usage", "USAGE_METRICS"),
            ("nats", "NATS"),
        )
    }
    for config, ports in (("prometheus.yml", up), ("cluster.yml", many)):
        for job, expected in ports.items():
            assert _targets(config, job) == expected, f"{config}: {job}"
        jobs = {
            s["job_name"]
            for s in yaml.safe_load((PROMETHEUS / config).read_text())["scrape_configs"]
        }
        assert jobs == {"aitbc-api", "aitbc-keys", "aitbc-usage", "nats"}, config


@needs_promtool
def test_promtool_accepts_the_configuration_and_the_rules_pass_their_tests() -> None:
    for arguments in (
        *(["check", "config", config] for config in CONFIGS),
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],
    ):
        assert PROMTOOL is not None
        run = subprocess.run([PROMTOOL, *arguments], cwd=PROMETHEUS, capture_output=True, text=True)
        assert run.returncode == 0, f"promtool {' '.join(arguments)}:\n{run.stdout}{run.stderr}"


@needs_blackbox
def test_the_blackbox_exporter_accepts_the_nats_probes() -> None:
    assert BLACKBOX is not None
    modules = yaml.safe_load((PROMETHEUS / "blackbox.yml").read_text())["modules"]
    for config in CONFIGS:
        loaded = yaml.safe_load((PROMETHEUS / config).read_text())
        [nats] = [s for s in loaded["scrape_configs"] if s["job_name"] == "nats"]
        assert set(nats["params"]["module"]) <= set(modules)
    run = subprocess.run(
        [BLACKBOX, "--config.file=blackbox.yml", "--config.check"],
        cwd=PROMETHEUS,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr
