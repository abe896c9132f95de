"""deploy/prometheus/: what a cluster operator installs is generated, consistent and valid."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from django.conf import settings

from deployments.management.commands.export_prometheus_config import render_files
from deployments.rendering import constants as c
from deployments.rendering import monitoring

DIRECTORY = Path(settings.BASE_DIR) / "deploy" / "prometheus"
SHIPPED_CONFIGS = (monitoring.SCRAPE_CONFIG_FILE,)


def test_shipped_files_are_the_generated_ones() -> None:
    """Edited by hand or not regenerated: `manage.py export_prometheus_config` fixes it."""
    for name, text in render_files(DIRECTORY).items():
        assert (DIRECTORY / name).read_text() == text, name


def test_prometheus_rules_hold_exactly_the_rule_files_groups() -> None:
    objects = list(yaml.safe_load_all((DIRECTORY / monitoring.OPERATOR_RULES_FILE).read_text()))
    assert [o["kind"] for o in objects] == ["PrometheusRule"] * len(monitoring.RULE_FILES)
    for obj, name in zip(objects, monitoring.RULE_FILES, strict=True):
        rule_file = yaml.safe_load((DIRECTORY / name).read_text())
        assert obj["spec"]["groups"] == rule_file["groups"], name


def test_operator_monitors_scrape_what_the_plain_config_scrapes() -> None:
    monitors = list(yaml.safe_load_all((DIRECTORY / monitoring.OPERATOR_MONITORS_FILE).read_text()))
    jobs = yaml.safe_load((DIRECTORY / monitoring.SCRAPE_CONFIG_FILE).read_text())
    assert [m["metadata"]["name"] for m in monitors] == [
        j["job_name"] for j in jobs["scrape_configs"]
    ]
    serving = monitors[0]
    assert serving["kind"] == "PodMonitor"
    assert serving["spec"]["selector"]["matchExpressions"] == [
        {"key": c.LABEL_BACKEND, "operator": "Exists"}
    ]
    # The panels group by the pod labels, sanitized: the operator's targets must carry them.
    (endpoint,) = serving["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == c.SERVING_PORT_NAME
    assert {"regex": "__meta_kubernetes_pod_label_(.+)", "action": "labelmap"} in endpoint[
        "relabelings"
    ]


def test_portal_monitors_select_the_shipped_services() -> None:
    """deploy/k8s' web and gateway Services carry the labels the ServiceMonitors select."""
    services = {
        doc["metadata"]["name"]: doc
        for path in (Path(settings.BASE_DIR) / "deploy" / "k8s").glob("*.yaml")
        for doc in yaml.safe_load_all(path.read_text())
        if doc and doc["kind"] == "Service"
    }
    monitors = list(yaml.safe_load_all((DIRECTORY / monitoring.OPERATOR_MONITORS_FILE).read_text()))
    for monitor in monitors[1:]:
        service = services[monitor["metadata"]["name"]]
        assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"]
        selected = monitor["spec"]["selector"]["matchLabels"]
        assert selected.items() <= service["metadata"]["labels"].items()
        port_names = {p["name"] for p in service["spec"]["ports"]}
        assert monitor["spec"]["endpoints"][0]["port"] in port_names


def _promtool() -> str:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (./dev setup installs Debian's prometheus)")
    return promtool


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_promtool(), *args], capture_output=True, text=True, timeout=60)


def test_promtool_accepts_the_rule_files() -> None:
    result = _run("check", "rules", *(str(DIRECTORY / name) for name in monitoring.RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_the_prometheus_rules_groups(tmp_path: Path) -> None:
    files = []
    for obj in yaml.safe_load_all((DIRECTORY / monitoring.OPERATOR_RULES_FILE).read_text()):
        path = tmp_path / f"{obj['metadata']['name']}.yml"
        path.write_text(yaml.safe_dump({"groups": obj["spec"]["groups"]}))
        files.append(str(path))
    result = _run("check", "rules", *files)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", SHIPPED_CONFIGS)
def test_promtool_accepts_the_scrape_config(name: str) -> None:
    result = _run("check", "config", "--syntax-only", str(DIRECTORY / name))
    output = result.stdout + result.stderr
    if "field kubernetes_sd_configs not found" in output:
        pytest.skip(
            "this promtool was built without Kubernetes service discovery (Debian's package "
            "strips it); put an upstream promtool first on PATH to check the scrape config"
        )
    assert result.returncode == 0, output
