"""Simulated kubelet for the KWOK nodes of the local cluster.

KWOK fakes most pods; the pods it skips (engine and portal images, see
devstack.cluster.stages.is_sim_kubelet_pod) are run here as real local processes: engine pods as
their simulator (`python -m devstack.tgi_simulator`, `devstack.vllm_simulator`,
`devstack.sglang_simulator`, see runtime.engine_argv) inside their node's network namespace
(devstack.kubelet.network), portal pods (weight-download Jobs) as local Python processes. Pod
status, probes, restarts with back-off, graceful deletion, the attach-detach controller's
Multi-Attach refusal and a PV provisioner (zonal and shared classes) behave like the real
components, and container logs are served to `pods/log` over the kubelet's HTTPS port
(devstack.kubelet.logs).

Run: `python -m devstack.kubelet --kubeconfig var/cluster/kubeconfig` (started by
`python -m devstack.cluster up`).
"""
