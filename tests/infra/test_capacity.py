"""Every Deployment at its HPA maximum, plus one surge pod each, fits the node pool.

Computed from what the program declares: the Deployments' requests and the
HPAs' maxima from the synthesized objects, the instance types and limits from
Karpenter's NodePool. Allocatable per node follows EKS's reservation formula
(kube-reserved CPU and memory, eviction threshold) minus Karpenter's VM memory
overhead estimate and the per-node daemonsets; pods are packed first-fit
decreasing onto the largest allowed instance type. Before Karpenter, staging's
three fixed m6i.2xlarge nodes could not hold the surge pod of any rollout.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from infra import catalog
from infra.synth.mocks import ProgramRun

#: (vCPUs, memory GiB, EKS max pods) of the instance types the stacks allow (EC2 docs;
#: max pods from EKS's eni-max-pods table).
INSTANCE_SHAPES = {
    "m5.large": (2, 8, 29),
    "m6i.large": (2, 8, 29),
    "m5.xlarge": (4, 16, 58),
    "m6i.xlarge": (4, 16, 58),
    "m7i.xlarge": (4, 16, 58),
    "m6i.2xlarge": (8, 32, 58),
    "m6i.4xlarge": (16, 64, 234),
    "m7i.4xlarge": (16, 64, 234),
}
#: Per-node daemonsets' requests (aws-node, kube-proxy, ebs-csi-node, node-exporter).
DAEMONSET_CPU_M = 25 + 100 + 30 + 100
DAEMONSET_MEMORY_MI = 0 + 0 + 120 + 64
#: Karpenter's default VM_MEMORY_OVERHEAD_PERCENT.
VM_MEMORY_OVERHEAD = 0.075
SURGE = 1


@dataclass(frozen=True)
class Pod:
    owner: str
    cpu_m: int
    memory_mi: int


def cpu_millis(quantity: str) -> int:
    return int(quantity[:-1]) if quantity.endswith("m") else int(float(quantity) * 1000)


def memory_mebi(quantity: str) -> int:
    match = re.fullmatch(r"([0-9]+)(Ki|Mi|Gi|Ti|K|M|G|T)?", quantity)
    assert match, quantity
    factor = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "Ti": 1024**2, None: 1 / 1024**2}
    decimal = {"K": 1e3 / 2**20, "M": 1e6 / 2**20, "G": 1e9 / 2**20, "T": 1e12 / 2**20}
    unit = match[2]
    return math.ceil(int(match[1]) * (factor[unit] if unit in factor else decimal[unit]))


def eks_reserved_cpu_m(vcpus: int) -> int:
    """kube-reserved CPU: 6% of the first core, 1% of the second, 0.5% up to 4, 0.25% above."""
    reserved = 60.0 + (10 if vcpus > 1 else 0) + 5 * max(0, min(vcpus, 4) - 2)
    return math.ceil(reserved + 2.5 * max(0, vcpus - 4))


def allocatable(instance_type: str) -> tuple[int, int]:
    """(CPU millicores, memory MiB) left for pods after EKS, Karpenter and daemonsets."""
    vcpus, memory_gib, max_pods = INSTANCE_SHAPES[instance_type]
    memory = memory_gib * 1024 * (1 - VM_MEMORY_OVERHEAD)
    memory -= 255 + 11 * max_pods + 100  # kube-reserved and the eviction threshold
    cpu = vcpus * 1000 - eks_reserved_cpu_m(vcpus)
    return cpu - DAEMONSET_CPU_M, int(memory) - DAEMONSET_MEMORY_MI


def pods_at_peak(run: ProgramRun) -> list[Pod]:
    maxima = {
        hpa.inputs["spec"]["scaleTargetRef"]["name"]: hpa.inputs["spec"]["maxReplicas"]
        for hpa in run.kubernetes_objects("HorizontalPodAutoscaler")
    }
    pods = []
    for deployment in run.kubernetes_objects("Deployment"):
        name = deployment.outputs["metadata"]["name"]
        spec = deployment.inputs["spec"]
        replicas = maxima.get(name, spec.get("replicas", 1)) + SURGE
        requests = [c["resources"]["requests"] for c in spec["template"]["spec"]["containers"]]
        cpu = sum(cpu_millis(str(r["cpu"])) for r in requests)
        memory = sum(memory_mebi(str(r["memory"])) for r in requests)
        pods += [Pod(name, cpu, memory)] * replicas
    return pods


def pack(pods: list[Pod], node: tuple[int, int]) -> list[list[Pod]]:
    """First-fit decreasing by CPU."""
    nodes: list[list[Pod]] = []
    free: list[list[int]] = []
    for pod in sorted(pods, key=lambda p: (p.cpu_m, p.memory_mi), reverse=True):
        for index, (cpu, memory) in enumerate(free):
            if pod.cpu_m <= cpu and pod.memory_mi <= memory:
                free[index] = [cpu - pod.cpu_m, memory - pod.memory_mi]
                nodes[index].append(pod)
                break
        else:
            nodes.append([pod])
            free.append([node[0] - pod.cpu_m, node[1] - pod.memory_mi])
    return nodes


def node_pool(run: ProgramRun) -> dict[str, Any]:
    pools = [r for r in run.kubernetes_objects() if r.inputs.get("kind") == "NodePool"]
    assert len(pools) == 1, "an AWS stack declares one Karpenter NodePool"
    spec: dict[str, Any] = pools[0].inputs["spec"]
    return spec


@pytest.mark.parametrize("stack", ["dev", "staging", "production"])
def test_every_deployment_at_its_maximum_plus_a_surge_pod_fits(
    stack: str, stack_run: Callable[[str], ProgramRun]
) -> None:
    run = stack_run(stack)
    spec = node_pool(run)
    requirements = spec["template"]["spec"]["requirements"]
    types = next(r["values"] for r in requirements if r["key"].endswith("instance-type"))
    assert set(types) <= set(INSTANCE_SHAPES), "add the new type's shape to INSTANCE_SHAPES"
    largest = max(types, key=lambda t: INSTANCE_SHAPES[t][:2])
    node = allocatable(largest)
    pods = pods_at_peak(run)
    assert pods, "no Deployment found"
    # Every long-running workload of the catalog is counted, the rollback handler too.
    owners = {pod.owner for pod in pods}
    expected = {*catalog.SHIPPED_SERVICES, catalog.ROLLBACK_HANDLER.name}
    if catalog.DASHBOARDS.shipped:
        expected.add(catalog.DASHBOARDS.name)
    assert expected <= owners, expected - owners
    for pod in pods:
        too_big = f"{stack}: a {pod.owner} pod fits no {largest} ({node[0]}m, {node[1]}Mi)"
        assert pod.cpu_m <= node[0], too_big
        assert pod.memory_mi <= node[1], too_big
    nodes = pack(pods, node)
    vcpus, memory_gib, _ = INSTANCE_SHAPES[largest]
    limits = spec["limits"]
    cpu_limit = int(limits["cpu"])
    memory_limit_gib = memory_mebi(str(limits["memory"])) / 1024
    assert len(nodes) * vcpus <= cpu_limit, (
        f"{stack}: the peak needs {len(nodes)} x {largest} ({len(nodes) * vcpus} vCPUs), "
        f"over the NodePool's cpu limit {cpu_limit}"
    )
    assert len(nodes) * memory_gib <= memory_limit_gib


def test_a_4_cpu_pod_takes_a_whole_8_vcpu_node_after_daemonsets() -> None:
    # Why production moved to 16-vCPU nodes: two ml-services pods never share an m6i.2xlarge.
    cpu, _ = allocatable("m6i.2xlarge")
    assert 4000 <= cpu < 8000
    assert len(pack([Pod("ml", 4000, 8192)] * 2, allocatable("m6i.2xlarge"))) == 2
    assert len(pack([Pod("ml", 4000, 8192)] * 3, allocatable("m7i.4xlarge"))) == 1


def test_quantities() -> None:
    assert cpu_millis("2000m") == 2000
    assert cpu_millis("1.5") == 1500
    assert memory_mebi("4Gi") == 4096
    assert memory_mebi("512Mi") == 512
