"""A small NetworkPolicy evaluator over synthesized manifests, with Kubernetes' semantics.

``PolicySet(manifests).allowed(source, destination, port)`` answers whether a
connection is admitted: the source's egress and the destination's ingress must
both allow it. Semantics follow the Kubernetes documentation
(concepts/services-networking/network-policies):

* A pod selected by no policy of a direction is unrestricted in that
  direction; once any policy selects it for that direction, only what some
  rule of those policies allows passes (policies are additive).
* ``policyTypes`` defaults to ``Ingress`` plus ``Egress`` when egress rules
  are present.
* A rule with no peers matches every peer; a rule with no ports every port.
* A peer with only ``podSelector`` selects pods of the policy's namespace; with
  only ``namespaceSelector``, every pod of the matching namespaces; with both,
  matching pods of matching namespaces. ``ipBlock`` matches addresses outside
  the cluster's pods (pod IPs are ephemeral; how a CNI treats them is not
  defined), minus its ``except`` ranges.
* Ports: ``protocol`` defaults to TCP; ``endPort`` makes a range. Named ports
  are not used by this project's policies and never match here.

Namespaces carry their ``kubernetes.io/metadata.name`` label automatically.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


@dataclass(frozen=True)
class Pod:
    """A pod: its namespace and labels."""

    namespace: str
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Address:
    """An address that is not a pod of the cluster (a node, RDS, the internet)."""

    ip: str


Endpoint = Pod | Address


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A LabelSelector against a label set (``{}`` matches everything)."""
    if selector is None:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def load_manifests(directory: Path) -> list[dict[str, Any]]:
    """Every document of every ``*.yaml`` file in ``directory``."""
    documents: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*.yaml")):
        documents.extend(doc for doc in yaml.safe_load_all(path.read_text("utf-8")) if doc)
    return documents


class PolicySet:
    """The NetworkPolicies and Namespaces of a set of manifests."""

    def __init__(self, manifests: Iterable[Mapping[str, Any]]) -> None:
        self.policies: list[Mapping[str, Any]] = []
        self.namespaces: dict[str, dict[str, str]] = {}
        for doc in manifests:
            if doc.get("kind") == "NetworkPolicy":
                self.policies.append(doc)
            elif doc.get("kind") == "Namespace":
                name = doc["metadata"]["name"]
                self.namespaces[name] = dict(doc["metadata"].get("labels") or {})

    def namespace_labels(self, namespace: str) -> dict[str, str]:
        """A namespace's labels, with the automatic name label."""
        return {**self.namespaces.get(namespace, {}), NAMESPACE_NAME_LABEL: namespace}

    def allowed(
        self, source: Endpoint, destination: Endpoint, port: int, protocol: str = "TCP"
    ) -> bool:
        """Whether ``source`` may open a connection to ``destination`` on ``port``."""
        egress_ok = not isinstance(source, Pod) or self._admits(
            source, "Egress", destination, port, protocol
        )
        ingress_ok = not isinstance(destination, Pod) or self._admits(
            destination, "Ingress", source, port, protocol
        )
        return egress_ok and ingress_ok

    def _admits(self, pod: Pod, direction: str, peer: Endpoint, port: int, protocol: str) -> bool:
        selecting = [
            policy
            for policy in self.policies
            if policy["metadata"]["namespace"] == pod.namespace
            and direction in _policy_types(policy)
            and selector_matches(policy["spec"].get("podSelector") or {}, pod.labels)
        ]
        if not selecting:
            return True
        key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
        return any(
            self._rule_matches(
                rule, peers_key, policy["metadata"]["namespace"], peer, port, protocol
            )
            for policy in selecting
            for rule in policy["spec"].get(key) or []
        )

    def _rule_matches(
        self,
        rule: Mapping[str, Any],
        peers_key: str,
        policy_namespace: str,
        peer: Endpoint,
        port: int,
        protocol: str,
    ) -> bool:
        ports = rule.get("ports") or []
        if ports and not any(_port_matches(spec, port, protocol) for spec in ports):
            return False
        peers = rule.get(peers_key) or []
        return not peers or any(self._peer_matches(p, policy_namespace, peer) for p in peers)

    def _peer_matches(self, spec: Mapping[str, Any], policy_namespace: str, peer: Endpoint) -> bool:
        if "ipBlock" in spec:
            return isinstance(peer, Address) and _in_block(spec["ipBlock"], peer.ip)
        if not isinstance(peer, Pod):
            return False
        namespace_selector = spec.get("namespaceSelector")
        if namespace_selector is None:
            namespace_ok = peer.namespace == policy_namespace
        else:
            namespace_ok = selector_matches(
                namespace_selector, self.namespace_labels(peer.namespace)
            )
        return namespace_ok and selector_matches(spec.get("podSelector"), peer.labels)


def _policy_types(policy: Mapping[str, Any]) -> list[str]:
    spec = policy["spec"]
    if spec.get("policyTypes"):
        return list(spec["policyTypes"])
    return ["Ingress", *(["Egress"] if spec.get("egress") else [])]


def _port_matches(spec: Mapping[str, Any], port: int, protocol: str) -> bool:
    if spec.get("protocol", "TCP") != protocol:
        return False
    if "port" not in spec:
        return True
    start = spec["port"]
    if not isinstance(start, int):
        return False
    return start <= port <= int(spec.get("endPort", start))


def _in_block(block: Mapping[str, Any], ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    if address not in ipaddress.ip_network(block["cidr"]):
        return False
    return not any(address in ipaddress.ip_network(cidr) for cidr in block.get("except") or [])
