"""What a cluster's Prometheus needs to feed the portal's panels: pure functions, data out.

Two equivalent forms, both shipped in ``deploy/prometheus/`` (``manage.py
export_prometheus_config`` writes them): a plain ``scrape_configs`` fragment for a Prometheus
configured by file, and prometheus-operator objects (PodMonitor, ServiceMonitors,
PrometheusRule) for kube-prometheus-stack and the like. The devstack Prometheus loads the
plain fragment with only the cluster-access placeholders replaced (devstack/cluster/prometheus.py).

The panels' PromQL (engines/<name>/metrics.py) and the recording rules group serving-pod
series by ``namespace``, ``pod`` and every pod label, sanitized (``inference.portal/colour``
becomes ``inference_portal_colour``): the serving job keeps exactly those. The pods to scrape
are the ones carrying ``inference.backend`` (every engine's pods, see constants.LABEL_BACKEND).
"""

from __future__ import annotations

from typing import Any

from deployments.rendering import constants as c

# deploy/prometheus/: the rule files (python -m deployments.metrics, export_guardrail_rules), the
# plain scrape config and the operator's objects (export_prometheus_config writes both).
RULE_FILES = ("inference-recording-rules.yml", "inference-rules.yml")
SCRAPE_CONFIG_FILE = "scrape-configs.yaml"
OPERATOR_MONITORS_FILE = "operator/monitors.yaml"
OPERATOR_RULES_FILE = "operator/prometheus-rules.yaml"

SERVING_JOB = "inference-serving-pods"
METRICS_PATH = "/metrics"
# In-cluster access as a pod's service account has it; the placeholders a Prometheus running
# elsewhere (devstack's) replaces with its own apiserver address and credentials.
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
ACCESS_KEYS = ("api_server", "tls_config", "authorization")


def in_cluster_access() -> dict[str, Any]:
    return {
        "api_server": "https://kubernetes.default.svc",
        "tls_config": {"ca_file": f"{SERVICE_ACCOUNT_DIR}/ca.crt"},
        "authorization": {"credentials_file": f"{SERVICE_ACCOUNT_DIR}/token"},
    }


# The operator's objects live where the operator looks for them; kube-prometheus-stack by
# default selects only objects labelled with its release (docs/metrics.md says how).
OPERATOR_API = "monitoring.coreos.com/v1"


def label_meta(label: str) -> str:
    """Prometheus' meta label for a Kubernetes pod label (non-alphanumerics become ``_``)."""
    sanitized = "".join(ch if ch.isalnum() else "_" for ch in label)
    return f"__meta_kubernetes_pod_label_{sanitized}"


def portal_job(component: str) -> str:
    return f"{c.PORTAL_APP_NAME}-{component}"


def _portal_selector(component: str) -> dict[str, str]:
    return {c.LABEL_NAME: c.PORTAL_APP_NAME, c.LABEL_COMPONENT: component}


def _serving_scrape_config() -> dict[str, Any]:
    return {
        "job_name": SERVING_JOB,
        "metrics_path": METRICS_PATH,
        "kubernetes_sd_configs": [{"role": "pod", **in_cluster_access()}],
        "relabel_configs": [
            {"source_labels": [label_meta(c.LABEL_BACKEND)], "regex": ".+", "action": "keep"},
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
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
            {"source_labels": ["__meta_kubernetes_pod_node_name"], "target_label": "node"},
            {"regex": "__meta_kubernetes_pod_label_(.+)", "action": "labelmap"},
        ],
    }


def _portal_scrape_config(component: str) -> dict[str, Any]:
    selector = ",".join(f"{k}={v}" for k, v in _portal_selector(component).items())
    return {
        "job_name": portal_job(component),
        "metrics_path": METRICS_PATH,
        "kubernetes_sd_configs": [
            {
                "role": "pod",
                **in_cluster_access(),
                "namespaces": {"names": [c.PORTAL_NAMESPACE]},
                "selectors": [{"role": "pod", "label": selector}],
            }
        ],
        # `(.+)`: a target without these meta labels keeps the labels it was given.
        "relabel_configs": [
            {
                "source_labels": ["__meta_kubernetes_namespace"],
                "regex": "(.+)",
                "target_label": "namespace",
            },
            {
                "source_labels": ["__meta_kubernetes_pod_name"],
                "regex": "(.+)",
                "target_label": "pod",
            },
        ],
    }


def render_scrape_configs() -> list[dict[str, Any]]:
    """The plain Prometheus jobs: serving pods, then the portal's web and gateway pods."""
    return [
        _serving_scrape_config(),
        *(_portal_scrape_config(component) for component in c.PORTAL_METRICS_COMPONENTS),
    ]


def render_monitors() -> list[dict[str, Any]]:
    """prometheus-operator's equivalent of render_scrape_configs().

    The operator itself sets ``namespace``, ``pod`` and ``container`` and keeps only running
    pods; the serving PodMonitor adds ``node`` and the pod labels as the plain job does.
    """
    serving = {
        "apiVersion": OPERATOR_API,
        "kind": "PodMonitor",
        "metadata": {"name": SERVING_JOB, "labels": {c.LABEL_PART_OF: c.PART_OF}},
        "spec": {
            "namespaceSelector": {"any": True},
            "selector": {"matchExpressions": [{"key": c.LABEL_BACKEND, "operator": "Exists"}]},
            "podMetricsEndpoints": [
                {
                    "port": c.SERVING_PORT_NAME,
                    "path": METRICS_PATH,
                    "relabelings": [
                        {
                            "sourceLabels": ["__meta_kubernetes_pod_node_name"],
                            "targetLabel": "node",
                        },
                        {"regex": "__meta_kubernetes_pod_label_(.+)", "action": "labelmap"},
                    ],
                }
            ],
        },
    }
    portal = [
        {
            "apiVersion": OPERATOR_API,
            "kind": "ServiceMonitor",
            "metadata": {
                "name": portal_job(component),
                "namespace": c.PORTAL_NAMESPACE,
                "labels": {c.LABEL_PART_OF: c.PART_OF},
            },
            "spec": {
                "selector": {"matchLabels": _portal_selector(component)},
                "endpoints": [{"port": "http", "path": METRICS_PATH}],
            },
        }
        for component in c.PORTAL_METRICS_COMPONENTS
    ]
    return [serving, *portal]


def render_prometheus_rule(name: str, groups: list[dict[str, Any]]) -> dict[str, Any]:
    """A PrometheusRule holding rule groups exactly as a plain Prometheus rule file has them."""
    return {
        "apiVersion": OPERATOR_API,
        "kind": "PrometheusRule",
        "metadata": {"name": name, "labels": {c.LABEL_PART_OF: c.PART_OF}},
        "spec": {"groups": groups},
    }
