"""Every component derives from ``infra.components.base`` and keeps its Pulumi type.

A component's type is part of its URN and of the URN of every resource under it,
so a changed type replaces them all on ``pulumi up``. The types below are the ones
stacks have been deployed with: a new component adds its type here, and a change to
an existing one needs an alias (``pulumi.ResourceOptions(aliases=...)``) first.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pulumi
import pytest

import infra.components
from infra.components.base import AwsComponent, Component

DEPLOYED_TYPES = {
    "AddonNetworkPolicies": "enterprisehub:k8s:AddonNetworkPolicies",
    "Cache": "enterprisehub:aws:Cache",
    "ClusterAddons": "enterprisehub:k8s:ClusterAddons",
    "Dashboards": "enterprisehub:k8s:Dashboards",
    "Database": "enterprisehub:aws:Database",
    "Datastores": "enterprisehub:k8s:Datastores",
    "EksCluster": "enterprisehub:aws:EksCluster",
    "ExistingEksCluster": "enterprisehub:aws:ExistingEksCluster",
    "ExternalDns": "enterprisehub:aws:ExternalDns",
    "FeatureService": "enterprisehub:k8s:FeatureService",
    "IsolatedNamespace": "enterprisehub:k8s:IsolatedNamespace",
    "Karpenter": "enterprisehub:aws:Karpenter",
    "KubeconfigCluster": "enterprisehub:k8s:KubeconfigCluster",
    "LoadBalancerController": "enterprisehub:aws:LoadBalancerController",
    "Monitoring": "enterprisehub:k8s:Monitoring",
    "Network": "enterprisehub:aws:Network",
    "PlatformJobs": "enterprisehub:k8s:PlatformJobs",
    "PlatformNetworkPolicies": "enterprisehub:k8s:PlatformNetworkPolicies",
    "PublicIngress": "enterprisehub:k8s:PublicIngress",
    "Registry": "enterprisehub:aws:Registry",
    "RollbackHandler": "enterprisehub:k8s:RollbackHandler",
    "ServiceRoles": "enterprisehub:aws:ServiceRoles",
    "Storage": "enterprisehub:aws:Storage",
}


def _component_classes() -> dict[str, type[pulumi.ComponentResource]]:
    """Every ComponentResource class defined in a module of infra/components."""
    found = {}
    for module_info in pkgutil.iter_modules(infra.components.__path__):
        module = importlib.import_module(f"infra.components.{module_info.name}")
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if (
                cls.__module__ == module.__name__
                and issubclass(cls, pulumi.ComponentResource)
                and cls not in (Component, AwsComponent)
            ):
                found[name] = cls
    return found


COMPONENTS = _component_classes()


def test_every_component_keeps_its_deployed_type() -> None:
    types = {name: getattr(cls, "component_type", None) for name, cls in COMPONENTS.items()}
    assert types == DEPLOYED_TYPES


@pytest.mark.parametrize("name", sorted(COMPONENTS))
def test_component_derives_from_the_base(name: str) -> None:
    cls = COMPONENTS[name]
    assert issubclass(cls, Component), f"{name}: derive from infra.components.base.Component"
