"""deploy/k8s/ applied to the local cluster: accepted, scheduled, and least-privilege RBAC.

The manifests go into a fresh namespace (cluster-scoped RBAC objects get a unique suffix) by
server-side apply. Their image is swapped for a pause image so KWOK runs the pods: the local
simulated kubelet would start the portal image's commands as host processes, which cannot
reach PostgreSQL from the pod network and are not what this test is about.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes import config as kube_config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient

from tests.fixtures.cluster import K8sClients, wait_for

pytestmark = pytest.mark.cluster

MANIFESTS = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
PORTAL_IMAGE = "inference-portal:latest"
STAND_IN_IMAGE = "registry.k8s.io/pause:3.10"
FIELD_MANAGER = "manifest-test"
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding"}


def load_manifests() -> list[dict[str, Any]]:
    """Every object of the kustomization, in its resource order."""
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    objects = []
    for resource in kustomization["resources"]:
        objects += [doc for doc in yaml.safe_load_all((MANIFESTS / resource).read_text()) if doc]
    return objects


def relocate(manifest: dict[str, Any], namespace: str, suffix: str) -> dict[str, Any]:
    """The object as it lands in the test's namespace, with cluster-wide names made unique."""
    manifest = copy.deepcopy(manifest)
    kind, meta = manifest["kind"], manifest["metadata"]
    if kind not in CLUSTER_SCOPED:
        meta["namespace"] = namespace
    if kind in ("ClusterRole", "ClusterRoleBinding"):
        meta["name"] += suffix
    if kind == "ClusterRoleBinding":
        manifest["roleRef"]["name"] += suffix
        for subject in manifest["subjects"]:
            subject["namespace"] = namespace
    template = manifest.get("spec", {}).get("template", {}).get("spec")
    for container in (template or {}).get("containers", []):
        if container["image"] == PORTAL_IMAGE:
            container["image"] = STAND_IN_IMAGE
    return manifest


def test_manifests_are_structurally_sound() -> None:
    objects = load_manifests()
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    for name in ("web", "worker", "beat", "gateway"):
        assert ("Deployment", f"inference-portal-{name}") in kinds
    deployments = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}
    gateway = deployments["inference-portal-gateway"]
    container = gateway["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][:3] == ["python", "-m", "gateway"]
    assert "8080" in container["command"]
    assert gateway["spec"]["template"]["spec"]["serviceAccountName"] == "inference-portal-gateway"
    for obj in objects:
        if obj["kind"] in ("Deployment", "Job"):
            pod = obj["spec"]["template"]["spec"]
            # Kept off GPU nodes by the label GPU feature discovery sets, no label of ours.
            assert "nodeSelector" not in pod
            required = pod["affinity"]["nodeAffinity"]
            terms = required["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            no_gpu = {"key": "nvidia.com/gpu.present", "operator": "DoesNotExist"}
            assert terms == [{"matchExpressions": [no_gpu]}]
            for c in pod["containers"]:
                assert c["image"] == PORTAL_IMAGE
                secrets = {
                    e["name"]: e["valueFrom"]["secretKeyRef"]["name"]
                    for e in c.get("env", [])
                    if "valueFrom" in e
                }
                assert secrets == dict.fromkeys(
                    ("SECRET_KEY", "DATABASE_URL"), "inference-portal-secrets"
                )
    beat = deployments["inference-portal-beat"]
    assert beat["spec"]["replicas"] == 1 and beat["spec"]["strategy"]["type"] == "Recreate"


@pytest.fixture
def applied(k8s: K8sClients, namespace: str) -> Iterator[dict[str, Any]]:
    """The manifests applied into `namespace`; the cluster-wide RBAC objects removed after."""
    suffix = f"-{namespace}"
    dynamic = DynamicClient(k8s.api_client)
    objects = [relocate(o, namespace, suffix) for o in load_manifests()]
    cluster_wide: list[tuple[str, str]] = []
    try:
        for manifest in objects:
            resource = dynamic.resources.get(
                api_version=manifest["apiVersion"], kind=manifest["kind"]
            )
            if manifest["kind"] == "Namespace":
                # The fixture's namespace stands in; the object itself must still be valid.
                resource.server_side_apply(
                    body=manifest, field_manager=FIELD_MANAGER, dry_run="All"
                )
                continue
            if manifest["kind"] in CLUSTER_SCOPED:
                cluster_wide.append((manifest["kind"], manifest["metadata"]["name"]))
            resource.server_side_apply(body=manifest, field_manager=FIELD_MANAGER)
        k8s.core.create_namespaced_secret(
            namespace,
            {
                "metadata": {"name": "inference-portal-secrets"},
                "stringData": {"SECRET_KEY": "x" * 50, "DATABASE_URL": "postgres://p@db/p"},
            },
        )
        yield {"namespace": namespace, "suffix": suffix, "objects": objects}
    finally:
        for kind, name in cluster_wide:
            try:
                if kind == "ClusterRole":
                    k8s.rbac.delete_cluster_role(name)
                else:
                    k8s.rbac.delete_cluster_role_binding(name)
            except ApiException as error:
                if error.status != 404:
                    raise


def test_portal_runs_on_the_system_pool(k8s: K8sClients, applied: dict[str, Any]) -> None:
    namespace = applied["namespace"]
    deployments = [o for o in applied["objects"] if o["kind"] == "Deployment"]
    for deployment in deployments:
        name, replicas = deployment["metadata"]["name"], deployment["spec"]["replicas"]

        def available(name: str = name, replicas: int = replicas) -> bool:
            status = k8s.apps.read_namespaced_deployment_status(name, namespace).status
            return (status.available_replicas or 0) == replicas

        wait_for(available, 60, describe=f"{name}: {replicas} available replicas")
    pods = k8s.core.list_namespaced_pod(namespace).items
    serving = [p for p in pods if p.metadata.labels.get("app.kubernetes.io/component") != "migrate"]
    assert len(serving) == sum(d["spec"]["replicas"] for d in deployments)
    for pod in pods:
        node = k8s.core.read_node(pod.spec.node_name)
        assert "nvidia.com/gpu" not in (node.status.capacity or {}), pod.metadata.name
    wait_for(
        lambda: (
            k8s.batch.read_namespaced_job_status(
                "inference-portal-migrate", namespace
            ).status.succeeded
        ),
        60,
        describe="the migrate Job completes",
    )
    services = {s.metadata.name for s in k8s.core.list_namespaced_service(namespace).items}
    assert {"inference-portal-web", "inference-portal-gateway"} <= services


def _allowed(
    k8s: K8sClients,
    user: str,
    verb: str,
    resource: str,
    *,
    group: str = "",
    namespace: str | None = None,
    name: str | None = None,
    subresource: str | None = None,
) -> bool:
    attributes = {"verb": verb, "resource": resource, "group": group}
    attributes.update(
        {
            k: v
            for k, v in (("namespace", namespace), ("name", name), ("subresource", subresource))
            if v
        }
    )
    authorization: Any = client.AuthorizationV1Api(k8s.api_client)  # plain dicts, see K8sClients
    review = authorization.create_subject_access_review(
        {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": user,
                "groups": ["system:serviceaccounts", "system:authenticated"],
                "resourceAttributes": attributes,
            },
        }
    )
    return bool(review.status.allowed)


def test_portal_service_account_can_do_its_work_and_nothing_more(
    k8s: K8sClients, applied: dict[str, Any]
) -> None:
    portal = f"system:serviceaccount:{applied['namespace']}:inference-portal"
    tenant = "tenant-anyone"
    can = [
        ("create", "namespaces", "", None, None, None),
        ("patch", "namespaces", "", None, tenant, None),
        ("create", "deployments", "apps", tenant, None, None),
        ("patch", "deployments", "apps", tenant, "tgi-chat-blue", None),
        ("delete", "deployments", "apps", tenant, "tgi-chat-blue", None),
        ("get", "deployments", "apps", tenant, "tgi-chat-blue", "status"),
        ("list", "deployments", "apps", None, None, None),
        ("create", "jobs", "batch", tenant, None, None),
        ("patch", "horizontalpodautoscalers", "autoscaling", tenant, "tgi-chat", None),
        ("patch", "networkpolicies", "networking.k8s.io", tenant, "tgi-chat", None),
        ("patch", "persistentvolumeclaims", "", tenant, "weights", None),
        ("patch", "resourcequotas", "", tenant, "tenant-quota", None),
        ("list", "services", "", None, None, None),
        ("list", "pods", "", None, None, None),
        ("list", "persistentvolumeclaims", "", None, None, None),
        ("delete", "persistentvolumeclaims", "", tenant, "weights", None),
        ("list", "events", "", tenant, None, None),
        ("get", "pods", "", tenant, "tgi-chat-blue-1", "log"),
        ("get", "pods", "", tenant, "tgi-chat-blue-1", "proxy"),
        ("create", "pods", "", tenant, "tgi-chat-blue-1", "proxy"),
        ("list", "nodes", "", None, None, None),
        ("list", "endpointslices", "discovery.k8s.io", tenant, None, None),
        ("create", "secrets", "", tenant, "hf-token", None),
        ("get", "secrets", "", tenant, "hf-token", None),
        ("delete", "secrets", "", tenant, "hf-token", None),
    ]
    cannot = [
        ("get", "secrets", "", "kube-system", None, None),
        ("list", "secrets", "", "kube-system", None, None),
        ("get", "secrets", "", tenant, "some-other-secret", None),
        ("list", "secrets", "", tenant, None, None),
        ("create", "clusterrolebindings", "rbac.authorization.k8s.io", None, None, None),
        ("create", "rolebindings", "rbac.authorization.k8s.io", tenant, None, None),
        ("escalate", "clusterroles", "rbac.authorization.k8s.io", None, "admin", None),
        ("delete", "nodes", "", None, "system-1", None),
        ("patch", "nodes", "", None, "system-1", None),
        ("delete", "namespaces", "", None, tenant, None),
        ("create", "pods", "", tenant, None, None),
        ("create", "events", "", tenant, None, None),
        ("create", "pods", "", tenant, "x", "exec"),
        ("create", "serviceaccounts", "", tenant, None, None),
        ("delete", "customresourcedefinitions", "apiextensions.k8s.io", None, None, None),
    ]
    for verb, resource, group, ns, name, sub in can:
        assert _allowed(
            k8s, portal, verb, resource, group=group, namespace=ns, name=name, subresource=sub
        ), f"portal cannot {verb} {resource}/{sub or ''} {ns}/{name}"
    for verb, resource, group, ns, name, sub in cannot:
        assert not _allowed(
            k8s, portal, verb, resource, group=group, namespace=ns, name=name, subresource=sub
        ), f"portal CAN {verb} {resource}/{sub or ''} {ns}/{name}"


def test_gateway_service_account_only_watches_endpoint_slices(
    k8s: K8sClients, applied: dict[str, Any]
) -> None:
    gateway = f"system:serviceaccount:{applied['namespace']}:inference-portal-gateway"
    for verb in ("list", "watch"):
        assert _allowed(k8s, gateway, verb, "endpointslices", group="discovery.k8s.io")
    for verb, resource, group in (
        ("get", "secrets", ""),
        ("list", "pods", ""),
        ("list", "services", ""),
        ("list", "configmaps", ""),
        ("create", "endpointslices", "discovery.k8s.io"),
        ("delete", "endpointslices", "discovery.k8s.io"),
        ("create", "deployments", "apps"),
        ("list", "nodes", ""),
    ):
        assert not _allowed(k8s, gateway, verb, resource, group=group, namespace="tenant-any")


@pytest.fixture
def tenant_namespace(k8s: K8sClients) -> Iterator[str]:
    name = f"t-portal-tenant-{uuid.uuid4().hex[:6]}"
    yield name
    try:
        k8s.core.delete_namespace(name)
    except ApiException as error:
        if error.status != 404:
            raise


def test_impersonated_portal_applies_a_tenant_namespace_and_deployment(
    k8s: K8sClients, cluster: Any, applied: dict[str, Any], tenant_namespace: str
) -> None:
    """Real requests as the ServiceAccount, the way portal/kube.py makes them."""
    account = f"system:serviceaccount:{applied['namespace']}:inference-portal"
    api_client = kube_config.new_client_from_config(config_file=str(cluster.kubeconfig))
    api_client.set_default_header("Impersonate-User", account)
    try:
        dynamic = DynamicClient(api_client)

        def apply(manifest: dict[str, Any]) -> Any:
            resource = dynamic.resources.get(
                api_version=manifest["apiVersion"], kind=manifest["kind"]
            )
            return resource.server_side_apply(
                body=manifest, field_manager="inference-portal", force_conflicts=True
            )

        apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": tenant_namespace}})
        apply(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "tgi-probe", "namespace": tenant_namespace},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app": "tgi-probe"}},
                    "template": {
                        "metadata": {"labels": {"app": "tgi-probe"}},
                        "spec": {"containers": [{"name": "c", "image": STAND_IN_IMAGE}]},
                    },
                },
            }
        )
        apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "hf-token", "namespace": tenant_namespace},
                "stringData": {"token": "hf_example"},
            }
        )
        core: Any = client.CoreV1Api(api_client)
        rbac: Any = client.RbacAuthorizationV1Api(api_client)
        with pytest.raises(ApiException) as denied:
            core.list_namespaced_secret("kube-system")
        assert denied.value.status == 403
        with pytest.raises(ApiException) as denied:
            rbac.create_cluster_role_binding(
                {
                    "metadata": {"name": f"escalate{applied['suffix']}"},
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "ClusterRole",
                        "name": "cluster-admin",
                    },
                    "subjects": [{"kind": "User", "name": account}],
                }
            )
        assert denied.value.status == 403
    finally:
        api_client.close()
    assert k8s.apps.read_namespaced_deployment("tgi-probe", tenant_namespace).spec.replicas == 1


def test_gateway_and_worker_pods_are_admitted_by_tenant_network_policies() -> None:
    """The NetworkPolicy rendered for every deployment admits exactly the pods that call TGI:
    the gateway (traffic) and the worker (pre/post-promotion checks)."""
    from deployments.rendering import render_network_policy
    from tests.deployments.test_rendering import make_spec

    policy = render_network_policy(make_spec())
    peer = policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]
    deployments = {m["metadata"]["name"]: m for m in load_manifests() if m["kind"] == "Deployment"}
    for name, deployment in deployments.items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        admitted = all(labels.get(k) == v for k, v in peer.items())
        assert admitted == (name in ("inference-portal-gateway", "inference-portal-worker")), name
