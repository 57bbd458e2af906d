"""Kubernetes policies: the pod hardening baseline, autoscaling and disruption
budgets per Deployment, no literal secrets, default-deny networking.

Objects installed by Helm charts are not seen here (a Release's inputs are a
chart and values, not objects); the charts' values are pinned and tested in
tests/infra instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from pulumi_policy import ResourceValidationArgs, StackValidationArgs

from policies.common import Report, get, resource_policy, rules, say, stack_policy

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
STATEFUL_SET = "kubernetes:apps/v1:StatefulSet"
DAEMON_SET = "kubernetes:apps/v1:DaemonSet"
JOB = "kubernetes:batch/v1:Job"
CRON_JOB = "kubernetes:batch/v1:CronJob"
HPA = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
PDB = "kubernetes:policy/v1:PodDisruptionBudget"
NAMESPACE = "kubernetes:core/v1:Namespace"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"

WORKLOADS = frozenset({DEPLOYMENT, STATEFUL_SET, DAEMON_SET, JOB, CRON_JOB})
STORAGE_CLASS = "kubernetes:storage.k8s.io/v1:StorageClass"
NODE_CLASS = "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass"
LONG_RUNNING = frozenset({DEPLOYMENT, STATEFUL_SET, DAEMON_SET})
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}\Z")
SECRET_NAME = re.compile(r"(?i)(password|passwd|secret|token|api_?key|private_?key|credential|dsn)")
#: A URL that carries its own credentials (postgresql://user:password@host/db).
URL_WITH_PASSWORD = re.compile(r"://[^/\s:@]+:[^/\s@]+@")


def pod_spec(resource_type: str, props: Any) -> Any:
    """The pod template's spec of a workload object."""
    if resource_type == CRON_JOB:
        return get(props, "spec.jobTemplate.spec.template.spec", {})
    return get(props, "spec.template.spec", {})


def containers(resource_type: str, props: Any, *, init: bool = True) -> Iterator[tuple[str, Any]]:
    """(`path`, container) for every container (and init container) of a workload."""
    spec = pod_spec(resource_type, props)
    prefix = (
        "spec.jobTemplate.spec.template.spec" if resource_type == CRON_JOB else "spec.template.spec"
    )
    kinds = ("containers", "initContainers") if init else ("containers",)
    for kind in kinds:
        for index, container in enumerate(get(spec, kind) or []):
            yield f"{prefix}.{kind}[{index}]", container


def _label(args: ResourceValidationArgs, path: str, container: Any) -> str:
    return f"{args.urn} container {get(container, 'name', '?')}"


def _storage_class_encrypted(args: ResourceValidationArgs, report: Report) -> None:
    if str(get(args.props, "parameters.encrypted")).lower() != "true":
        report(
            say(
                args.urn,
                "parameters.encrypted",
                'is not "true"',
                'set parameters encrypted: "true" (and a kmsKeyId) on the EBS StorageClass',
            )
        )


def _node_class_hardened(args: ResourceValidationArgs, report: Report) -> None:
    if get(args.props, "spec.metadataOptions.httpTokens") != "required":
        report(
            say(
                args.urn,
                "spec.metadataOptions.httpTokens",
                "is not required",
                "set metadataOptions.httpTokens: required (IMDSv2 only)",
            )
        )
    volumes = get(args.props, "spec.blockDeviceMappings") or []
    if not volumes or any(
        not isinstance(v, Mapping) or get(v, "ebs.encrypted") is not True for v in volumes
    ):
        report(
            say(
                args.urn,
                "spec.blockDeviceMappings",
                "has a volume that is not encrypted (or none is declared)",
                "declare the root volume with ebs.encrypted: true",
            )
        )


def _resources(args: ResourceValidationArgs, report: Report) -> None:
    for path, c in containers(args.resource_type, args.props):
        missing = [
            f"resources.{kind}.{what}"
            for kind in ("requests", "limits")
            for what in ("cpu", "memory")
            if not get(c, f"resources.{kind}.{what}")
        ]
        if missing:
            report(
                say(
                    _label(args, path, c),
                    f"{path}.{missing[0]}",
                    f"is missing ({', '.join(missing)})",
                    "set cpu and memory requests and limits (services.<name>.cpu/memory in stack "
                    "config)",
                )
            )


def _probes(args: ResourceValidationArgs, report: Report) -> None:
    if args.resource_type not in LONG_RUNNING:
        return
    for path, c in containers(args.resource_type, args.props, init=False):
        for probe in ("livenessProbe", "readinessProbe"):
            if not get(c, probe):
                report(
                    say(
                        _label(args, path, c),
                        f"{path}.{probe}",
                        "is missing",
                        f"add a {probe} (an httpGet on the service's health path)",
                    )
                )


def _non_root(args: ResourceValidationArgs, report: Report) -> None:
    pod_level = get(pod_spec(args.resource_type, args.props), "securityContext.runAsNonRoot")
    for path, c in containers(args.resource_type, args.props):
        value = get(c, "securityContext.runAsNonRoot", pod_level)
        if value is not True:
            report(
                say(
                    _label(args, path, c),
                    f"{path}.securityContext.runAsNonRoot",
                    "is not true (nor set on the pod)",
                    "set runAsNonRoot: true and a non-zero runAsUser",
                )
            )


def _container_flag(prop: str, expected: bool, fix: str) -> Any:
    def validate(args: ResourceValidationArgs, report: Report) -> None:
        for path, c in containers(args.resource_type, args.props):
            if get(c, f"securityContext.{prop}") is not expected:
                report(
                    say(
                        _label(args, path, c),
                        f"{path}.securityContext.{prop}",
                        f"is not {str(expected).lower()}",
                        fix,
                    )
                )

    return validate


def _drop_all(args: ResourceValidationArgs, report: Report) -> None:
    for path, c in containers(args.resource_type, args.props):
        drop = get(c, "securityContext.capabilities.drop") or []
        if "ALL" not in drop:
            report(
                say(
                    _label(args, path, c),
                    f"{path}.securityContext.capabilities.drop",
                    "does not contain ALL",
                    'set capabilities: {drop: ["ALL"]} and add back only what the process needs',
                )
            )


def _pinned(args: ResourceValidationArgs, report: Report) -> None:
    for path, c in containers(args.resource_type, args.props):
        image = get(c, "image")
        if not isinstance(image, str) or not DIGEST.search(image):
            report(
                say(
                    _label(args, path, c),
                    f"{path}.image",
                    f"is {image!r}, not pinned by digest",
                    "reference the image as REPOSITORY@sha256:<digest> (CI sets `image` in the "
                    "stack config after the push)",
                )
            )


def _no_literal_secrets(args: ResourceValidationArgs, report: Report) -> None:
    for path, c in containers(args.resource_type, args.props):
        for index, env in enumerate(get(c, "env") or []):
            name = str(get(env, "name", ""))
            if SECRET_NAME.search(name) and get(env, "value") is not None:
                report(
                    say(
                        _label(args, path, c),
                        f"{path}.env[{index}].value",
                        f"holds a literal value for {name}",
                        "read it from a Secret (valueFrom.secretKeyRef or envFrom.secretRef)",
                    )
                )


def _no_secret_in_config_map(args: ResourceValidationArgs, report: Report) -> None:
    # The services read every setting through envFrom of a ConfigMap, not env:
    # a credential that lands among the settings is in plain text in the
    # cluster, readable by anyone who may read ConfigMaps, and in no Secret.
    data = get(args.props, "data") or {}

    def leaked(key: str) -> None:
        report(
            say(
                args.urn,
                f"data.{key}",
                "holds a credential in a ConfigMap",
                "move it to the workload's Secret (read through envFrom.secretRef or "
                "valueFrom.secretKeyRef)",
            )
        )

    # Names first: they are known in preview, while a value taken from another
    # resource's output may not be (reading it stops the policy there).
    keys = sorted(str(key) for key in data)
    named = [key for key in keys if SECRET_NAME.search(key)]
    for key in named:
        leaked(key)
    for key in keys:
        if key not in named and URL_WITH_PASSWORD.search(str(data[key])):
            leaked(key)


def _namespace(props: Any) -> str:
    return str(get(props, "metadata.namespace") or "default")


def _selector_matches(selector: Any, labels: Mapping[str, Any]) -> bool:
    match = get(selector, "matchLabels") or {}
    if not match:
        return False
    return all(labels.get(k) == v for k, v in match.items())


def _autoscaled_and_budgeted(args: StackValidationArgs, report: Report) -> None:
    minimum = rules(args).min_hpa_replicas
    hpas = [r for r in args.resources if r.resource_type == HPA]
    pdbs = [r for r in args.resources if r.resource_type == PDB]
    for deployment in (r for r in args.resources if r.resource_type == DEPLOYMENT):
        name = get(deployment.props, "metadata.name")
        namespace = _namespace(deployment.props)
        targeting = [
            h
            for h in hpas
            if _namespace(h.props) == namespace
            and get(h.props, "spec.scaleTargetRef.kind") == "Deployment"
            and get(h.props, "spec.scaleTargetRef.name") == name
        ]
        if not targeting:
            report(
                say(
                    deployment.urn,
                    "HorizontalPodAutoscaler",
                    f"is missing for Deployment {namespace}/{name}",
                    "declare an autoscaling/v2 HorizontalPodAutoscaler whose scaleTargetRef "
                    "names it",
                ),
                deployment.urn,
            )
        for hpa in targeting:
            low = get(hpa.props, "spec.minReplicas", 1)
            if not isinstance(low, int | float) or low < minimum:
                report(
                    say(
                        hpa.urn,
                        "spec.minReplicas",
                        f"is {low}, below {minimum} for this environment",
                        f"set services.<name>.minReplicas >= {minimum}",
                    ),
                    hpa.urn,
                )
        labels = get(deployment.props, "spec.template.metadata.labels") or {}
        if not any(
            _namespace(p.props) == namespace
            and _selector_matches(get(p.props, "spec.selector"), labels)
            for p in pdbs
        ):
            report(
                say(
                    deployment.urn,
                    "PodDisruptionBudget",
                    f"is missing for Deployment {namespace}/{name}",
                    "declare a policy/v1 PodDisruptionBudget whose selector matches the pod labels",
                ),
                deployment.urn,
            )


def _is_default_deny(props: Any) -> bool:
    selector = get(props, "spec.podSelector")
    if selector is None or get(selector, "matchLabels") or get(selector, "matchExpressions"):
        return False
    types = set(get(props, "spec.policyTypes") or [])
    return (
        {"Ingress", "Egress"} <= types
        and not get(props, "spec.ingress")
        and not get(props, "spec.egress")
    )


def _default_deny(args: StackValidationArgs, report: Report) -> None:
    namespaces: dict[str, str] = {}
    for r in args.resources:
        if r.resource_type == NAMESPACE and get(r.props, "metadata.name"):
            namespaces[str(get(r.props, "metadata.name"))] = r.urn
        elif r.resource_type in WORKLOADS:
            namespaces.setdefault(_namespace(r.props), r.urn)
    denied = {
        _namespace(r.props)
        for r in args.resources
        if r.resource_type == NETWORK_POLICY and _is_default_deny(r.props)
    }
    for namespace, urn in sorted(namespaces.items()):
        if namespace not in denied:
            report(
                say(
                    urn,
                    "NetworkPolicy",
                    f"default-deny is missing in namespace {namespace}",
                    "declare a NetworkPolicy with podSelector {} and policyTypes [Ingress, Egress] "
                    "and no rules, then allow each flow explicitly",
                ),
                urn,
            )


POLICIES = [
    resource_policy(
        "k8s-storage-class-encrypted",
        "Every StorageClass the stack declares encrypts its volumes.",
        [STORAGE_CLASS],
        _storage_class_encrypted,
    ),
    resource_policy(
        "karpenter-nodes-hardened",
        "Karpenter's nodes require IMDSv2 and encrypt their volumes.",
        [NODE_CLASS],
        _node_class_hardened,
    ),
    resource_policy(
        "k8s-resources-requests-limits",
        "Every container sets cpu and memory requests and limits.",
        WORKLOADS,
        _resources,
    ),
    resource_policy(
        "k8s-liveness-readiness-probes",
        "Every long-running container has liveness and readiness probes.",
        WORKLOADS,
        _probes,
    ),
    resource_policy(
        "k8s-run-as-non-root", "Containers run as a non-root user.", WORKLOADS, _non_root
    ),
    resource_policy(
        "k8s-read-only-root-filesystem",
        "Containers have a read-only root filesystem.",
        WORKLOADS,
        _container_flag(
            "readOnlyRootFilesystem",
            True,
            "set readOnlyRootFilesystem: true; mount an emptyDir for /tmp",
        ),
    ),
    resource_policy(
        "k8s-no-privilege-escalation",
        "Containers cannot gain privileges.",
        WORKLOADS,
        _container_flag("allowPrivilegeEscalation", False, "set allowPrivilegeEscalation: false"),
    ),
    resource_policy(
        "k8s-drop-all-capabilities", "Containers drop all Linux capabilities.", WORKLOADS, _drop_all
    ),
    resource_policy(
        "k8s-image-pinned-by-digest", "Images are pinned by digest.", WORKLOADS, _pinned
    ),
    resource_policy(
        "k8s-no-literal-secret-env",
        "No credential is written literally into a container's env.",
        WORKLOADS,
        _no_literal_secrets,
    ),
    resource_policy(
        "k8s-no-secret-in-configmap",
        "No ConfigMap holds a credential (a secret-like key, or a URL with a password).",
        [CONFIG_MAP],
        _no_secret_in_config_map,
    ),
    stack_policy(
        "k8s-deployment-hpa-and-pdb",
        "Every Deployment has an HPA (min 2 replicas in production) and a PodDisruptionBudget.",
        [DEPLOYMENT, HPA, PDB],
        _autoscaled_and_budgeted,
    ),
    stack_policy(
        "k8s-namespace-default-deny",
        "Every namespace with workloads has a default-deny NetworkPolicy.",
        [NAMESPACE, NETWORK_POLICY, *WORKLOADS],
        _default_deny,
    ),
]
