"""Undo a Deployment's latest rollout, exactly as ``kubectl rollout undo`` does.

kubectl (``polymorphichelpers.DeploymentRollbacker`` with ``toRevision=0``):

1. GET the Deployment;
2. LIST the ReplicaSets matching its selector and keep those it controls
   (an owner reference with ``controller: true`` and its uid);
3. by their ``deployment.kubernetes.io/revision`` annotation, take the newest
   and the one before it; none before it: "no rollout history found";
4. refuse a paused Deployment; skip when the previous template already equals
   the current one (ignoring ``pod-template-hash``);
5. send one JSON patch (``application/json-patch+json``): replace
   ``/spec/template`` with the previous ReplicaSet's template without its
   ``pod-template-hash`` label, and ``/metadata/annotations`` with the
   Deployment's own revision bookkeeping plus the ReplicaSet's other annotations.
   Unlike kubectl, the patch first tests ``/metadata/resourceVersion``, so it
   applies only to the Deployment read in step 1. Refused (422), it starts
   again from step 1 while the template is still the one first read (status
   writes and the autoscaler change the version too); a changed template is a
   release racing the incident, never overwritten with the older template but
   recorded as a failure for an operator.

The Deployment controller then rolls the pods and gives the restored template
the next revision number (its ReplicaSet keeps its ``pod-template-hash``).

One refusal kubectl does not make: when the newest ReplicaSet carries the
template an earlier automatic undo restored (no release since), undoing again
would bring back the template that failed, so it is left to an operator. The
restored template's ``pod-template-hash`` is written on the Deployment itself
(:data:`RESTORED_HASH_ANNOTATION`) by the same patch that restores it, so the
refusal holds even when the handler died after the patch and before the
incident row recorded the outcome; the row's ``restored_hash`` is checked too.

Objects are handled as the API server's raw JSON (lightkube's generic
resources), so a template field the client's models do not know is still
copied, never dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx2
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.generic_resource import create_namespaced_resource
from lightkube.operators import exists, in_, not_exists, not_in
from lightkube.types import PatchType

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
#: The label the controller adds to a ReplicaSet's template (never in a Deployment's).
TEMPLATE_HASH_LABEL = "pod-template-hash"
#: Kept from the Deployment, never copied from the ReplicaSet (kubectl's annotationsToSkip).
ANNOTATIONS_TO_SKIP = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION_ANNOTATION,
        "deployment.kubernetes.io/revision-history",
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "deprecated.deployment.rollback.to",
    }
)
#: Written by the undo's own patch: the ``pod-template-hash`` of the template it restored.
RESTORED_HASH_ANNOTATION = "rollback.enterprisehub.io/restored-template-hash"
#: Reads and patches tried when the Deployment keeps changing under the patch.
PATCH_ATTEMPTS = 3
#: API calls of one attempt: read the Deployment, list its ReplicaSets, patch.
API_CALLS_PER_ATTEMPT = 3


def undo_deadline_seconds(timeout_seconds: float) -> float:
    """The longest one Deployment's undo may take: every call of every attempt at the timeout.

    The client's timeout bounds each wait for a byte, not a whole response: an
    API server (or a proxy) that trickles an answer would hold the claim for as
    long as it likes. This deadline is what makes the slowest undo a number
    the RollbackDeploymentUndoStuck alert can be set above.
    """
    return PATCH_ATTEMPTS * API_CALLS_PER_ATTEMPT * timeout_seconds


#: A failed JSON-patch ``test`` is a 422; a conflicting write a 409.
_CHANGED_SINCE_READ = frozenset({409, 422})
#: Why a Deployment whose template changed during the undo is left alone.
TEMPLATE_CHANGED = (
    "the Deployment's template changed while undoing (a release landed): "
    "undoing now would overwrite it, so it is left to an operator"
)
#: kubectl's own field manager is ``kubectl-rollout``; ours names the handler.
FIELD_MANAGER = "rollback-handler"

# Raw-JSON resources: the template is copied field for field (see the module docstring).
GenericDeployment = create_namespaced_resource("apps", "v1", "Deployment", "deployments")
GenericReplicaSet = create_namespaced_resource("apps", "v1", "ReplicaSet", "replicasets")


@dataclass(frozen=True, slots=True)
class UndoOutcome:
    """What happened to one Deployment: rolled back, or why not."""

    deployment: str
    rolled_back: bool
    reason: str
    from_revision: int | None = None
    to_revision: int | None = None
    #: The Kubernetes API failed (or refused): an operator must look.
    failed: bool = False
    #: The ``pod-template-hash`` of the template restored (the next undo checks it).
    restored_hash: str | None = None

    def as_record(self) -> dict[str, Any]:
        """The JSON kept on the incident row: every field, by name."""
        return asdict(self)

    def describe(self) -> str:
        """One line for logs and Slack."""
        if self.rolled_back:
            return f"{self.deployment}: revision {self.from_revision} -> {self.to_revision}"
        return f"{self.deployment}: not rolled back ({self.reason})"


@dataclass(frozen=True, slots=True)
class UndoPlan:
    """The patch that undoes the rollout, or the reason there is none."""

    patch: list[dict[str, Any]] | None
    reason: str
    from_revision: int | None = None
    to_revision: int | None = None
    restored_hash: str | None = None


def revision(obj: Mapping[str, Any]) -> int | None:
    """The object's revision annotation: 0 when absent, None when not a number (kubectl)."""
    value = (obj.get("metadata") or {}).get("annotations", {}).get(REVISION_ANNOTATION)
    if value is None:
        return 0
    try:
        return int(value)
    except ValueError:
        return None


def _without_hash(template: Mapping[str, Any]) -> dict[str, Any]:
    copy = dict(template)
    metadata = dict(copy.get("metadata") or {})
    labels = {k: v for k, v in (metadata.get("labels") or {}).items() if k != TEMPLATE_HASH_LABEL}
    if labels:
        metadata["labels"] = labels
    else:
        metadata.pop("labels", None)
    copy["metadata"] = metadata
    return copy


def controlled_by(replica_set: Mapping[str, Any], deployment: Mapping[str, Any]) -> bool:
    """The ReplicaSet's controller reference names this Deployment (metav1.IsControlledBy)."""
    uid = deployment["metadata"].get("uid")
    return any(
        ref.get("controller") is True and ref.get("uid") == uid
        for ref in replica_set["metadata"].get("ownerReferences") or []
    )


def _hash(replica_set: Mapping[str, Any]) -> str | None:
    labels = replica_set["spec"]["template"].get("metadata", {}).get("labels") or {}
    value = labels.get(TEMPLATE_HASH_LABEL)
    return str(value) if value is not None else None


def plan_undo(
    deployment: Mapping[str, Any],
    replica_sets: Sequence[Mapping[str, Any]],
    *,
    restored_hash: str | None = None,
) -> UndoPlan:
    """kubectl's ``rollout undo`` (to the previous revision) over objects already fetched.

    ``restored_hash``: the template the last automatic undo of this Deployment
    restored, as recorded on the incident row; the Deployment's own
    :data:`RESTORED_HASH_ANNOTATION` counts as well. While either is still the
    newest, there is nothing left to undo.
    """
    name = deployment["metadata"]["name"]
    own = deployment["metadata"].get("annotations") or {}
    restored = {restored_hash, own.get(RESTORED_HASH_ANNOTATION)} - {None}
    latest: tuple[int, Mapping[str, Any]] | None = None
    previous: tuple[int, Mapping[str, Any]] | None = None
    for replica_set in replica_sets:
        if not controlled_by(replica_set, deployment):
            continue
        number = revision(replica_set)
        if number is None:
            continue
        if latest is None or latest[0] < number:
            previous, latest = latest, (number, replica_set)
        elif previous is None or previous[0] < number:
            previous = (number, replica_set)
    if latest is not None and _hash(latest[1]) in restored:
        return UndoPlan(
            None,
            f"revision {latest[0]} is the template an earlier automatic undo restored "
            "(no release since): undoing it would bring back the template that failed",
            latest[0],
        )
    if previous is None:
        return UndoPlan(None, f"no rollout history found for deployment {name!r}")
    current = latest[0] if latest else None
    to_revision, target = previous
    if deployment.get("spec", {}).get("paused"):
        return UndoPlan(None, "the deployment is paused", current, to_revision)
    template = _without_hash(target["spec"]["template"])
    if template == _without_hash(deployment["spec"]["template"]):
        return UndoPlan(
            None,
            f"current template already matches revision {to_revision}",
            current,
            to_revision,
        )
    annotations = {k: v for k, v in own.items() if k in ANNOTATIONS_TO_SKIP}
    annotations.update(
        {
            k: v
            for k, v in (target["metadata"].get("annotations") or {}).items()
            if k not in ANNOTATIONS_TO_SKIP
        }
    )
    restoring = _hash(target)
    if restoring is not None:
        # Recorded with the change itself: no crash can separate the two.
        annotations[RESTORED_HASH_ANNOTATION] = restoring
    patch: list[dict[str, Any]] = []
    version = deployment["metadata"].get("resourceVersion")
    if version is not None:
        # Only onto the Deployment this plan was made from: a release applied
        # since the GET is not the rollout the trigger fired for, and kubectl's
        # patch would overwrite it with an older template.
        patch.append({"op": "test", "path": "/metadata/resourceVersion", "value": version})
    patch += [
        {"op": "replace", "path": "/spec/template", "value": template},
        {"op": "replace", "path": "/metadata/annotations", "value": annotations},
    ]
    return UndoPlan(patch, "rolled back", current, to_revision, restoring)


def label_selector(selector: Mapping[str, Any]) -> dict[str, Any]:
    """A Deployment's ``spec.selector`` (labels and expressions) as lightkube's selector."""
    labels: dict[str, Any] = dict(selector.get("matchLabels") or {})
    operators = {
        "In": lambda values: in_(values),
        "NotIn": lambda values: not_in(values),
        "Exists": lambda _: exists(),
        "DoesNotExist": lambda _: not_exists(),
    }
    for requirement in selector.get("matchExpressions") or []:
        make = operators[requirement["operator"]]
        labels[requirement["key"]] = make(requirement.get("values") or [])
    return labels


def _api_failure(name: str, exc: Exception) -> UndoOutcome:
    if isinstance(exc, ApiError):
        status = exc.status
        detail = f"HTTP {status.code} {status.reason or ''}".strip()
        if status.message:
            detail += f": {status.message[:300]}"
    elif isinstance(exc, httpx2.HTTPStatusError):
        detail = f"HTTP {exc.response.status_code}"
    else:
        # Connection-level failures name their kind only (no URLs, no headers).
        detail = type(exc).__name__
    return UndoOutcome(name, rolled_back=False, reason=f"Kubernetes API: {detail}", failed=True)


class DeploymentRollbacker:
    """Undoes rollouts through the Kubernetes API (the pod's own ServiceAccount in-cluster)."""

    def __init__(self, client: AsyncClient, *, deadline_seconds: float) -> None:
        self._client = client
        self._deadline_seconds = deadline_seconds

    async def undo(self, name: str, *, restored_hash: str | None = None) -> UndoOutcome:
        """``kubectl rollout undo deployment/NAME``; a failure is an outcome, never raised.

        ``restored_hash`` as for :func:`plan_undo`. A patch refused because the
        Deployment changed since it was read (its ``resourceVersion`` test) is
        planned again from a fresh read while the template is the one first
        read (the controller's status writes and the autoscaler also change
        the version); a changed template is a release, left to an operator.
        An undo still running at ``deadline_seconds`` is given up as failed.
        """
        try:
            async with asyncio.timeout(self._deadline_seconds):
                return await self._undo(name, restored_hash)
        except TimeoutError:
            return UndoOutcome(
                name,
                rolled_back=False,
                reason=(
                    f"Kubernetes API: no complete answer within {self._deadline_seconds:g} s "
                    "(a patch may have landed: see the restored-template-hash annotation)"
                ),
                failed=True,
            )

    async def _undo(self, name: str, restored_hash: str | None) -> UndoOutcome:
        first_template: Any = None
        try:
            for attempt in range(1, PATCH_ATTEMPTS + 1):
                deployment = dict(await self._client.get(GenericDeployment, name))
                template = deployment["spec"]["template"]
                if first_template is None:
                    first_template = template
                elif template != first_template:
                    return UndoOutcome(name, False, TEMPLATE_CHANGED, failed=True)
                plan = await self._plan(deployment, restored_hash)
                if plan.patch is None:
                    return UndoOutcome(
                        name, False, plan.reason, plan.from_revision, plan.to_revision
                    )
                try:
                    await self._client.patch(
                        GenericDeployment,
                        name,
                        plan.patch,
                        namespace=deployment["metadata"].get("namespace"),
                        patch_type=PatchType.JSON,
                        field_manager=FIELD_MANAGER,
                    )
                except ApiError as exc:
                    if exc.status.code in _CHANGED_SINCE_READ and attempt < PATCH_ATTEMPTS:
                        continue
                    raise
                return UndoOutcome(
                    name,
                    True,
                    plan.reason,
                    plan.from_revision,
                    plan.to_revision,
                    restored_hash=plan.restored_hash,
                )
        except (ApiError, httpx2.HTTPError) as exc:
            return _api_failure(name, exc)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _plan(self, deployment: Mapping[str, Any], restored_hash: str | None) -> UndoPlan:
        """The Deployment's ReplicaSets listed, and :func:`plan_undo` over them."""
        replica_sets = [
            dict(rs)
            async for rs in self._client.list(
                GenericReplicaSet,
                namespace=deployment["metadata"].get("namespace"),
                labels=label_selector(deployment["spec"]["selector"]),
            )
        ]
        return plan_undo(deployment, replica_sets, restored_hash=restored_hash)

    async def aclose(self) -> None:
        """Close the client's connections."""
        await self._client.close()


def kubernetes_client(service_account_dir: Path, *, timeout_seconds: float) -> AsyncClient:
    """The in-cluster client the handler undoes rollouts with.

    The pod's ServiceAccount token, CA and namespace from ``service_account_dir``
    (``/var/run/secrets/kubernetes.io/serviceaccount``) and the API server from
    KUBERNETES_SERVICE_HOST/PORT, which the kubelet sets; the Deployments live
    in the handler's own namespace. Proxy variables are ignored: the API server
    is reached directly, as the NetworkPolicy allows.
    """
    return AsyncClient(
        config=KubeConfig.from_service_account(service_account=service_account_dir),
        timeout=httpx2.Timeout(timeout_seconds),
        field_manager=FIELD_MANAGER,
        trust_env=False,
    )
