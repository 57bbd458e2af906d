"""Building blocks shared by every workload the platform runs in Kubernetes.

The feature services, the Jobs, the dashboards and the local data stores all
need the same labels, the same hardened security contexts and the same
content-derived names. Keeping them here means one definition of "hardened"
that the tests, checkov and the Pod Security admission level ``restricted``
all check against.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Final

import pulumi
import pulumi_kubernetes as k8s

from infra import catalog

#: The uid/gid the project's image runs as. Above 10000 so it never collides with a
#: uid the node uses (checkov CKV_K8S_40) and matches the USER of the Dockerfile.
APP_UID: Final = 10001

#: Label keys the network policies, Services and the ServiceMonitor select on.
NAME_LABEL: Final = "app.kubernetes.io/name"
COMPONENT_LABEL: Final = "app.kubernetes.io/component"
PART_OF_LABEL: Final = "app.kubernetes.io/part-of"
#: Set on Services whose pods expose ``/metrics``; the ServiceMonitor selects it.
METRICS_LABEL: Final = "enterprisehub.ai/metrics"

#: Component label values. Network policies grant access by component, so a new
#: workload gets exactly the access of its kind and nothing else.
COMPONENT_API: Final = "api"
COMPONENT_JOB: Final = "job"
COMPONENT_DASHBOARD: Final = "dashboard"
COMPONENT_DATASTORE: Final = "datastore"

#: Kubernetes' automatic namespace label, present on every namespace since 1.21.
NAMESPACE_NAME_LABEL: Final = "kubernetes.io/metadata.name"


#: Per-object checkov skip for workloads that read a Secret through ``envFrom``.
#: The services' settings are environment variables by contract
#: (docs/contracts.md, issue 11: "env from a ConfigMap and a Secret"); each
#: workload gets its own immutable Secret holding only the keys it needs.
SECRET_ENV_SKIP: Final = {
    "checkov.io/skip1": (
        "CKV_K8S_35=settings are read from the environment by contract; "
        "per-workload immutable Secret with only the keys that workload needs"
    )
}


def irsa_annotations(role_arn: pulumi.Input[str] | None) -> dict[str, pulumi.Input[str]] | None:
    """The ServiceAccount annotation that binds an IAM role (IRSA); None without a role."""
    return {"eks.amazonaws.com/role-arn": role_arn} if role_arn is not None else None


def labels(name: str, component: str) -> dict[str, str]:
    """The recommended ``app.kubernetes.io`` labels for one workload."""
    return {
        NAME_LABEL: name,
        COMPONENT_LABEL: component,
        PART_OF_LABEL: catalog.PLATFORM,
        "app.kubernetes.io/managed-by": "pulumi",
    }


def platform_metadata(
    name: pulumi.Input[str],
    namespace: pulumi.Input[str],
    *,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, pulumi.Input[str]] | None = None,
) -> k8s.meta.v1.ObjectMetaArgs:
    """Metadata of a platform object that belongs to no one workload.

    It carries the ``part-of`` label (after any labels of its own), which the
    network policies and the operators' selectors rely on.
    """
    return k8s.meta.v1.ObjectMetaArgs(
        name=name,
        namespace=namespace,
        labels={**(labels or {}), PART_OF_LABEL: catalog.PLATFORM},
        annotations=dict(annotations) if annotations else None,
    )


def selector_labels(name: str) -> dict[str, str]:
    """The immutable subset of the labels used in selectors (never add to it later)."""
    return {NAME_LABEL: name, PART_OF_LABEL: catalog.PLATFORM}


def pod_security_context(
    uid: int = APP_UID, gid: int | None = None, fs_group: int | None = None
) -> k8s.core.v1.PodSecurityContextArgs:
    """Pod-level context: non-root with a fixed uid and the runtime's default seccomp filter.

    ``fs_group`` makes mounted volumes group-writable for the process; the
    ``OnRootMismatch`` policy avoids a recursive chown of a large data volume on
    every start.
    """
    group = gid if gid is not None else uid
    return k8s.core.v1.PodSecurityContextArgs(
        run_as_non_root=True,
        run_as_user=uid,
        run_as_group=group,
        fs_group=fs_group if fs_group is not None else group,
        fs_group_change_policy="OnRootMismatch",
        seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
    )


def container_security_context(
    uid: int = APP_UID, gid: int | None = None
) -> k8s.core.v1.SecurityContextArgs:
    """Container-level context: read-only root, no privilege escalation, no capabilities.

    Repeats the uid and seccomp profile of the pod context on purpose: scanners
    (and readers) check each container on its own.
    """
    return k8s.core.v1.SecurityContextArgs(
        run_as_non_root=True,
        run_as_user=uid,
        run_as_group=gid if gid is not None else uid,
        read_only_root_filesystem=True,
        allow_privilege_escalation=False,
        privileged=False,
        capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
        seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
    )


def tmp_volume(name: str = "tmp", size_limit: str = "256Mi") -> k8s.core.v1.VolumeArgs:
    """A size-limited emptyDir for /tmp, the one writable path a read-only root needs."""
    return k8s.core.v1.VolumeArgs(
        name=name, empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(size_limit=size_limit)
    )


def tmp_mount(name: str = "tmp", path: str = "/tmp") -> k8s.core.v1.VolumeMountArgs:  # noqa: S108
    """Mount point for :func:`tmp_volume` (a private emptyDir, not the node's /tmp)."""
    return k8s.core.v1.VolumeMountArgs(name=name, mount_path=path)


def resources(cpu: str, memory: str) -> k8s.core.v1.ResourceRequirementsArgs:
    """Requests equal to limits (Guaranteed QoS).

    The seed's table gives one size per service. Using it as both request and
    limit keeps the autoscaler's utilisation percentages meaningful (they are
    relative to the request) and means a noisy neighbour can never push a
    latency-bound service off the CPU it was sized for.
    """
    amounts = {"cpu": cpu, "memory": memory}
    return k8s.core.v1.ResourceRequirementsArgs(requests=amounts, limits=dict(amounts))


def content_hash(*parts: object, length: int = 8) -> str:
    """A short, stable hash of JSON-serialisable parts (sorted keys), for object names."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def hashed_name(prefix: str, *parts: pulumi.Input[object]) -> pulumi.Output[str]:
    """``prefix-<hash>`` where the hash covers ``parts`` (which may be Outputs).

    Used for objects that must be replaced, not edited, when their content
    changes: Jobs (their pod template is immutable) and the ConfigMaps/Secrets
    the Deployments read (a new name changes the pod template, so the pods roll
    and pick up the new values). The hash is unsecreted: a truncated SHA-256 of
    key material reveals nothing usable, and a secret *name* would be masked in
    every plan and manifest.
    """
    digest = pulumi.Output.all(*parts).apply(lambda values: f"{prefix}-{content_hash(*values)}")
    return pulumi.Output.unsecret(digest)


def check_image(image: pulumi.Input[str], owner: str) -> None:
    """Refuse a mutable image reference when it is known at declaration time.

    Stack config already resolves the image to a digest; this guards the
    component against a caller that skips the config layer. Outputs (unknown
    until deploy) are accepted as given.
    """
    if isinstance(image, str) and "@sha256:" not in image:
        raise ValueError(
            f"{owner}: image {image!r} is not pinned by digest "
            "(expected registry/repo@sha256:<64 hex>); tags such as 'latest' can move"
        )


def require_keys(
    owner: str, what: str, given: Sequence[str] | Mapping[str, object], required: Sequence[str]
) -> None:
    """Fail with a message naming the component and the missing keys."""
    missing = [key for key in required if key not in given]
    if missing:
        raise ValueError(f"{owner}: {what} is missing {', '.join(missing)}")
