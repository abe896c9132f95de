"""Prometheus configuration: TGI pods found through the local apiserver, plus portal/gateway."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from . import build, config

# Pods carrying this label are scraped; the portal sets it (to the engine's name) on every
# serving pod it renders, whichever engine runs there.
SCRAPE_POD_LABEL = "inference.backend"
SCRAPE_POD_LABEL_VALUE = ".+"
SCRAPE_INTERVAL = "2s"  # short so tests observe fresh samples quickly
RULES_DIR = config.REPO_ROOT / "deploy" / "prometheus"


def _label_meta(label: str) -> str:
    """Prometheus' sanitized meta label name for a Kubernetes pod label."""
    sanitized = "".join(ch if ch.isalnum() else "_" for ch in label)
    return f"__meta_kubernetes_pod_label_{sanitized}"


def render_config(layout: config.Layout) -> dict[str, Any]:
    pki = layout.pki
    api_tls = {
        "ca_file": str(pki / "ca.crt"),
        "cert_file": str(pki / "admin.crt"),
        "key_file": str(pki / "admin.key"),
    }
    tgi_job = {
        "job_name": "tgi-pods",
        "kubernetes_sd_configs": [
            {
                "role": "pod",
                "api_server": f"https://{config.HOST}:{config.APISERVER_PORT}",
                "tls_config": api_tls,
            }
        ],
        "relabel_configs": [
            {
                "source_labels": [_label_meta(SCRAPE_POD_LABEL)],
                "regex": SCRAPE_POD_LABEL_VALUE,
                "action": "keep",
            },
            # One target per declared container port; pods without ports are dropped.
            {
                "source_labels": ["__meta_kubernetes_pod_container_port_number"],
                "regex": ".+",
                "action": "keep",
            },
            {
                "source_labels": ["__meta_kubernetes_pod_phase"],
                "regex": "Running",
                "action": "keep",
            },
            {
                "source_labels": [
                    "__meta_kubernetes_pod_ip",
                    "__meta_kubernetes_pod_container_port_number",
                ],
                "separator": ":",
                "target_label": "__address__",
            },
            {"target_label": "__metrics_path__", "replacement": "/metrics"},
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
            {"source_labels": ["__meta_kubernetes_pod_node_name"], "target_label": "node"},
            {"regex": "__meta_kubernetes_pod_label_(.+)", "action": "labelmap"},
        ],
    }
    static_jobs = [
        {
            "job_name": name,
            "static_configs": [{"targets": [f"{config.HOST}:{port}"]}],
            "metrics_path": "/metrics",
        }
        for name, port in (("portal-web", config.PORTAL_WEB_PORT), ("gateway", config.GATEWAY_PORT))
    ]
    # Gateway processes on other ports (tests, benchmarks) register themselves by dropping a
    # target file here; Prometheus re-reads the directory without a reload.
    static_jobs[1]["file_sd_configs"] = [
        {"files": [str(gateway_targets_dir(layout) / "*.json")], "refresh_interval": "1s"}
    ]
    return {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        # The portal's recording rules (python -m deployments.metrics writes them; the metrics
        # pages read the per-deployment rates they record) and soft-guardrail alerts
        # (manage.py export_guardrail_rules). After adding a file: POST /-/reload.
        "rule_files": [str(RULES_DIR / "*.yml")],
        "scrape_configs": [tgi_job, *static_jobs],
    }


def gateway_targets_dir(layout: config.Layout) -> Path:
    return layout.prometheus / "gateway-targets"


def write_config(layout: config.Layout) -> Path:
    gateway_targets_dir(layout).mkdir(parents=True, exist_ok=True)
    target = layout.prometheus / "prometheus.yml"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(render_config(layout), sort_keys=False))
    return target


def command(layout: config.Layout) -> list[str]:
    return [
        str(build.binary_path("prometheus")),
        f"--config.file={layout.prometheus / 'prometheus.yml'}",
        f"--storage.tsdb.path={layout.prometheus / 'data'}",
        f"--web.listen-address={config.HOST}:{config.PROMETHEUS_PORT}",
        "--web.enable-lifecycle",  # POST /-/reload after config changes
        "--storage.tsdb.retention.time=2d",
    ]
