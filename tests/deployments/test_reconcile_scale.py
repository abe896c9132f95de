"""The reconciler's pass at fleet scale: its database side is a fixed number of queries and its
Kubernetes side a few paged cluster-wide LISTs, whatever the number of deployments; and its
shards split the tenants so that each is reconciled by exactly one of them."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from deployments import reconcile, tasks
from deployments.models import Deployment
from deployments.reconcile import ReconcileReport, Shard, reconcile_pass
from deployments.rendering import active_service_name, colour_name
from deployments.rendering.constants import LABEL_COLOUR, MANAGED_BY_SELECTOR, WEIGHTS_SELECTOR
from deployments.specs import SPEC_RELATED, serving_spec, serving_specs
from portal import kube
from tenants.audit import Actor, Channel
from tests.deployments.fleet_rows import settled_deployments, tenant_with_model
from tests.fixtures.personas import World

PER_TENANT = 5


def _page(items: list[Any], token: str | None) -> Any:
    return SimpleNamespace(items=items, metadata=SimpleNamespace(_continue=token))


class FakeCluster:
    """What the cluster lists for the portal's label: every settled deployment's serving side
    and its active Service selecting it, handed out `page_size` at a time."""

    def __init__(self, page_size: int = 7) -> None:
        self.page_size = page_size
        self.deployments: list[Any] = []
        self.services: list[Any] = []
        self.volumes: list[Any] = []
        self.calls: list[tuple[str, str, int]] = []

    def serve(self, deployment: Deployment) -> None:
        assert deployment.active_revision is not None
        spec = serving_spec(deployment.active_revision)
        namespace = deployment.tenant.namespace
        self.deployments.append(
            SimpleNamespace(
                metadata=SimpleNamespace(namespace=namespace, name=colour_name(spec, "blue"))
            )
        )
        self.services.append(
            SimpleNamespace(
                metadata=SimpleNamespace(namespace=namespace, name=active_service_name(spec)),
                spec=SimpleNamespace(selector={LABEL_COLOUR: "blue"}),
            )
        )

    def _list(self, kind: str, items: list[Any], **params: Any) -> Any:
        self.calls.append((kind, params["label_selector"], params["limit"]))
        start = int(params.get("_continue") or 0)
        end = start + self.page_size
        return _page(items[start:end], str(end) if end < len(items) else None)

    def list_deployment_for_all_namespaces(self, **params: Any) -> Any:
        return self._list("Deployment", self.deployments, **params)

    def list_service_for_all_namespaces(self, **params: Any) -> Any:
        return self._list("Service", self.services, **params)

    def list_persistent_volume_claim_for_all_namespaces(self, **params: Any) -> Any:
        return self._list("PersistentVolumeClaim", self.volumes, **params)


def _fleet(world: World, deployments: int, prefix: str = "fleet") -> None:
    """`deployments` more settled rows, PER_TENANT per new tenant, every other tenant with a
    Hub token."""
    admin = Actor(user=world.users["admin"], channel=Channel.CLI)
    for index in range(deployments // PER_TENANT):
        model = tenant_with_model(admin, f"{prefix}-{index}", hub_token=index % 2 == 0)
        settled_deployments(model, PER_TENANT)


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> FakeCluster:
    fake = FakeCluster()
    monkeypatch.setattr(kube, "api_client", lambda: None)
    monkeypatch.setattr(kube, "core", lambda: fake)
    monkeypatch.setattr(reconcile.client, "AppsV1Api", lambda api_client: fake)
    return fake


def _serve_all(cluster: FakeCluster) -> None:
    for deployment in Deployment.objects.exclude(active_revision=None):
        cluster.serve(deployment)


def test_a_pass_costs_the_same_queries_and_lists_for_10_and_60_deployments(
    world: World, cluster: FakeCluster
) -> None:
    measured = []
    for size, prefix in ((10, "small"), (50, "large")):  # 10, then 60 in all
        _fleet(world, size, prefix)
        cluster.deployments.clear()
        cluster.services.clear()
        _serve_all(cluster)
        cluster.calls.clear()
        with CaptureQueriesContext(connection) as captured:
            report = reconcile_pass(repair=False)
        assert report.repaired == []
        measured.append((report.checked, len(captured.captured_queries), len(cluster.calls)))

    (small, small_queries, small_lists), (large, large_queries, large_lists) = measured
    assert (small, large) == (10, 60)
    # (One of them finds the weights volumes some deployment needs.)
    assert small_queries == large_queries <= 7
    # Every kind, every page asked for the portal's own objects, at most PAGE at a time.
    assert {(kind, selector) for kind, selector, _ in cluster.calls} == {
        ("Deployment", MANAGED_BY_SELECTOR),
        ("Service", MANAGED_BY_SELECTOR),
        ("PersistentVolumeClaim", WEIGHTS_SELECTOR),
    }
    assert all(limit == reconcile.PAGE for _, _, limit in cluster.calls)
    assert (small_lists, large_lists) == (2 * 2 + 1, 2 * 9 + 1)  # pages of 7; no volumes


def test_specs_built_together_cost_the_same_queries_for_10_and_60_and_match_one_by_one(
    world: World,
) -> None:
    counts = []
    for size, prefix in ((10, "small"), (60, "large")):
        _fleet(world, size, prefix)
        with CaptureQueriesContext(connection) as captured:
            rows = list(
                Deployment.objects.filter(tenant__slug__startswith=prefix).select_related(
                    *SPEC_RELATED
                )
            )
            specs = serving_specs(rows)
        counts.append(len(captured.captured_queries))
        assert len(specs) == size
    # The deployments, their tenants' quotas, their tenants' Hub credentials.
    assert counts == [3, 3]
    for deployment in Deployment.objects.filter(tenant__slug__startswith="large"):
        assert deployment.active_revision is not None
        assert specs[deployment.pk] == serving_spec(deployment.active_revision)
    assert {spec.hf_token_secret_name is None for spec in specs.values()} == {True, False}
    assert {spec.autoscaling for spec in specs.values()} == {True, False}


def test_a_drifted_deployment_is_found_whatever_page_it_is_on(
    world: World, cluster: FakeCluster
) -> None:
    _fleet(world, 20)
    _serve_all(cluster)
    gone = cluster.deployments.pop(13)
    cluster.services[4].spec.selector = {LABEL_COLOUR: "green"}
    drifted_service = cluster.services[4].metadata

    report = reconcile_pass(repair=False)

    assert sorted(report.repaired) == sorted(
        [
            f"{gone.metadata.namespace}/Deployment/{gone.metadata.name} is missing",
            f"{drifted_service.namespace}/Service/{drifted_service.name} does not select the"
            " blue side",
        ]
    )


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_every_tenant_is_in_exactly_one_shard(count: int) -> None:
    shards = [Shard(index, count) for index in range(count)]
    for tenant_id in range(1, 500):
        assert sum(shard.holds(tenant_id) for shard in shards) == 1
    if count > 1:  # a hash that sent everyone to one shard would pass the line above
        assert all(any(shard.holds(t) for t in range(1, 500)) for shard in shards)


def test_shard_passes_together_check_every_deployment_once(
    world: World, cluster: FakeCluster
) -> None:
    _fleet(world, 40)
    _serve_all(cluster)
    everyone = reconcile_pass(repair=False).checked
    by_shard = [reconcile_pass(repair=False, shard=Shard(index, 3)).checked for index in range(3)]
    assert sum(by_shard) == everyone == 40
    assert all(by_shard)


def test_a_shard_outside_its_count_is_refused() -> None:
    with pytest.raises(ValueError, match=r"shard index must be in 0\.\.2"):
        Shard(3, 3)
    with pytest.raises(ValueError, match="shard count must be at least 1"):
        Shard(0, 0)


def test_beat_s_pass_sends_one_task_per_shard_when_sharded(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    sent: list[tuple[int, int]] = []
    passes: list[Shard] = []
    monkeypatch.setattr(tasks.reconcile_rollouts, "delay", lambda *args: sent.append(args))

    def reconcile_pass(shard: Shard) -> ReconcileReport:
        passes.append(shard)
        return ReconcileReport()

    monkeypatch.setattr(tasks, "reconcile_pass", reconcile_pass)

    settings.ROLLOUT_RECONCILE_SHARDS = 3
    assert tasks.reconcile_rollouts() == {"shards": 3}
    assert sent == [(0, 3), (1, 3), (2, 3)] and passes == []
    tasks.reconcile_rollouts(1, 3)
    assert passes == [Shard(1, 3)]

    settings.ROLLOUT_RECONCILE_SHARDS = 1
    tasks.reconcile_rollouts()
    assert passes[-1] == Shard(0, 1) and len(sent) == 3
