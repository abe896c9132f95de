"""Prometheus configuration: the shipped scrape config, pointed at the local apiserver and the
portal processes on this machine."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from deployments.rendering import monitoring

from . import build, config

SCRAPE_INTERVAL = "2s"  # short so tests observe fresh samples quickly
PROMETHEUS_DIR = config.REPO_ROOT / "deploy" / "prometheus"
SHIPPED_SCRAPE_CONFIG = PROMETHEUS_DIR / monitoring.SCRAPE_CONFIG_FILE
# The portal's processes run on this machine, not in pods: their jobs get these targets in
# place of the shipped pod discovery.
LOCAL_PROCESS_PORTS = {
    monitoring.portal_job("web"): config.PORTAL_WEB_PORT,
    monitoring.portal_job("gateway"): config.GATEWAY_PORT,
}


def _local_access(layout: config.Layout) -> dict[str, Any]:
    """The apiserver and credentials replacing the shipped in-cluster placeholders."""
    pki = layout.pki
    return {
        "api_server": f"https://{config.HOST}:{config.APISERVER_PORT}",
        # The local apiserver knows the admin client certificate, not service-account tokens
        # of a Prometheus pod: the same access, another credential.
        "tls_config": {
            "ca_file": str(pki / "ca.crt"),
            "cert_file": str(pki / "admin.crt"),
            "key_file": str(pki / "admin.key"),
        },
    }


def _localize(job: dict[str, Any], layout: config.Layout) -> dict[str, Any]:
    job = copy.deepcopy(job)
    port = LOCAL_PROCESS_PORTS.get(job["job_name"])
    if port is not None:
        del job["kubernetes_sd_configs"]
        job["static_configs"] = [{"targets": [f"{config.HOST}:{port}"]}]
        if job["job_name"] == monitoring.portal_job("gateway"):
            # Gateway processes on other ports (tests, benchmarks) register themselves by
            # dropping a target file here; Prometheus re-reads the directory without a reload.
            job["file_sd_configs"] = [
                {"files": [str(gateway_targets_dir(layout) / "*.json")], "refresh_interval": "1s"}
            ]
        return job
    for sd in job.get("kubernetes_sd_configs", []):
        for key in monitoring.ACCESS_KEYS:
            sd.pop(key, None)
        sd.update(_local_access(layout))
    return job


def render_config(layout: config.Layout) -> dict[str, Any]:
    """The shipped scrape config with its placeholders replaced for this machine.

    Only cluster access (api_server, tls_config, authorization) and the discovery of the
    portal's own processes differ from deploy/prometheus/scrape-configs.yaml; jobs, paths and
    relabelling are the shipped ones (tests/devstack/test_cluster_config.py checks it).
    """
    shipped = yaml.safe_load(SHIPPED_SCRAPE_CONFIG.read_text())
    return {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        # The portal's recording rules (the metrics pages read the per-deployment rates they
        # record) and soft-guardrail alerts. After regenerating one: POST /-/reload.
        "rule_files": [str(PROMETHEUS_DIR / name) for name in monitoring.RULE_FILES],
        "scrape_configs": [_localize(job, layout) for job in shipped["scrape_configs"]],
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
