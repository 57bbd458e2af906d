"""What Envoy Gateway writes in a Gateway's status, for the mocks.

A Gateway's ``status.addresses`` come from the Service Envoy Gateway creates for
its proxies, shaped by the ``EnvoyProxy`` its ``GatewayClass`` names
(``provider.kubernetes.envoyService.type``, LoadBalancer unless said otherwise).
The pinned v1.9 (``internal/gatewayapi/status/gateway.go``) publishes:

* LoadBalancer: the load balancer's ingress, IPs as ``IPAddress`` and then
  names as ``Hostname``. An AWS Network Load Balancer has a DNS name only.
* NodePort: the IPs of the nodes (``IPAddress``); on kind, addresses inside
  Docker's network.
* ClusterIP: the Service's cluster IPs.

and sets ``Programmed`` once there is an address and an Envoy replica is
available. :class:`EnvoyGatewayModel` remembers the GatewayClasses and
EnvoyProxies a program declares, so that a Gateway registered after them (it
depends on its class) gets the status its own proxies would give it.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, Final

#: The proxies' Service type when the EnvoyProxy says none (Envoy Gateway's default).
DEFAULT_SERVICE_TYPE: Final = "LoadBalancer"
#: A kind node's InternalIP (the first address of Docker's "kind" network).
KIND_NODE_ADDRESS: Final = "172.18.0.2"
#: A cluster IP of the proxies' Service (EKS's default service range).
CLUSTER_IP: Final = "172.20.143.7"


def _status(addresses: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "addresses": addresses,
        "conditions": [
            {"type": "Accepted", "status": "True", "reason": "Accepted"},
            {"type": "Programmed", "status": "True", "reason": "Programmed"},
        ],
    }


class EnvoyGatewayModel:
    """The GatewayClasses and EnvoyProxies seen so far, and the status they give a Gateway."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: GatewayClass name -> (namespace, name) of the EnvoyProxy it names.
        self._classes: dict[str, tuple[str, str] | None] = {}
        #: (namespace, name) -> the EnvoyProxy's spec.
        self._proxies: dict[tuple[str, str], Mapping[str, Any]] = {}

    def observe(self, obj: Mapping[str, Any]) -> None:
        """Remember a GatewayClass or EnvoyProxy (anything else is ignored)."""
        kind = obj.get("kind")
        metadata = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        with self._lock:
            if kind == "GatewayClass":
                ref = spec.get("parametersRef") or {}
                proxy = (
                    (str(ref.get("namespace", "")), str(ref["name"]))
                    if ref.get("kind") == "EnvoyProxy" and ref.get("name")
                    else None
                )
                self._classes[str(metadata.get("name"))] = proxy
            elif kind == "EnvoyProxy":
                key = (str(metadata.get("namespace", "")), str(metadata.get("name")))
                self._proxies[key] = spec

    def service_type(self, gateway: Mapping[str, Any]) -> str:
        """How the Gateway's proxies are exposed, from its class's EnvoyProxy."""
        class_name = str((gateway.get("spec") or {}).get("gatewayClassName", ""))
        with self._lock:
            proxy_key = self._classes.get(class_name)
            proxy = self._proxies.get(proxy_key) if proxy_key else None
        service = (((proxy or {}).get("provider") or {}).get("kubernetes") or {}).get(
            "envoyService"
        ) or {}
        return str(service.get("type") or DEFAULT_SERVICE_TYPE)

    def gateway_status(
        self, gateway: Mapping[str, Any], *, load_balancer_hostname: str
    ) -> dict[str, Any]:
        """The status Envoy Gateway writes once the proxies are up."""
        service_type = self.service_type(gateway)
        if service_type == "LoadBalancer":
            return _status([{"type": "Hostname", "value": load_balancer_hostname}])
        if service_type == "NodePort":
            return _status([{"type": "IPAddress", "value": KIND_NODE_ADDRESS}])
        if service_type == "ClusterIP":
            return _status([{"type": "IPAddress", "value": CLUSTER_IP}])
        raise ValueError(f"Envoy Gateway has no proxy Service type {service_type!r}")
