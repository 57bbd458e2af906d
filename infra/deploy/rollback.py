"""Stack rollback: plan a return to an earlier commit, refuse what is unsafe, run it.

Pulumi keeps no code or config in its history (pulumi/pulumi#96), and a revert
can drop a provider that resources created since still need to be deleted
(pulumi/pulumi#15370). So a rollback here is "deploy an earlier commit again",
planned first:

1. the current commit (of the newest successful update) and the target commit
   (by default the previous successful update's) are checked out into
   temporary git worktrees;
2. each is synthesized offline with its own code and its own stack config
   (`python -m infra.synth`, run from inside the worktree);
3. the two `resources.json` are compared (`infra.deploy.diff.plan`) and the
   plan is refused, with the reason, when
   * the target declares no resource or provider of a package (`aws`,
     `kubernetes`, `random`, ...) that the current state uses: the engine would
     need that plugin to delete what was created since;
   * an explicit provider would be deleted while resources it manages stay,
     or while the resource its configuration comes from is deleted too;
   * a stateful resource (database, cache, bucket, cluster, volume, key)
     would be deleted or replaced without `protect`/`retainOnDelete`;
   * the target's config or secrets are missing (its Pulumi.yaml requires a key
     that neither its stack file nor the current stack file provides, or its
     synthesis rejects the config);
   * the deployed commit's database schema is ahead of the target: the
     migration Job that gates every rollout runs `alembic upgrade head`, which
     fails on a database at a revision the target's code does not have
     ("Can't locate revision"), so the update would stop before any
     Deployment went back;
   * the target would take the EKS cluster's Kubernetes version, or the RDS
     or ElastiCache engine version, back to an older one: AWS upgrades these
     and never downgrades them, so the update would fail on that resource
     after changing others (`FORWARD_ONLY_VERSIONS`);
   * the target lacks a controller that owns cloud resources Pulumi does not
     track (`OWNING_CONTROLLERS`: the load balancer controller's NLB,
     Karpenter's nodes): deleting it would strand them;
   * the target's image is no longer in its ECR repository (asked by digest,
     `infra.deploy.image`), or the target is more than
     `registry.ROLLBACK_WINDOW` deployed commits back, further than the
     registry's lifecycle policy promises to keep images: the Deployments
     would roll to an image no node can pull and the update would hang.

`rollback` then runs `up` of the target worktree with its config (the secrets
copied from the current stack file, never printed), its policy pack, and the virtualenv
that synthesized the plan (a fresh worktree has none, and Pulumi would create
an empty one), checks the deployed services through the stack outputs, and
reports.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml
from pulumi import automation as auto

from infra.components.registry import KEEP_IMAGES, ROLLBACK_WINDOW
from infra.deploy import history as hist
from infra.deploy.diff import (
    Plan,
    ResourceChange,
    load_document,
    plan,
    render_markdown,
    summary_line,
)
from infra.deploy.image import check_image

#: Types that hold data: deleting or replacing one loses it.
STATEFUL_TYPES = frozenset(
    {
        "aws:rds/instance:Instance",
        "aws:rds/cluster:Cluster",
        "aws:elasticache/replicationGroup:ReplicationGroup",
        "aws:elasticache/cluster:Cluster",
        "aws:s3/bucket:Bucket",
        "aws:s3/bucketV2:BucketV2",
        "aws:eks/cluster:Cluster",
        "aws:ebs/volume:Volume",
        "aws:efs/fileSystem:FileSystem",
        "aws:dynamodb/table:Table",
        "aws:kms/key:Key",
        "aws:ecr/repository:Repository",
        "kubernetes:core/v1:PersistentVolumeClaim",
        "kubernetes:core/v1:PersistentVolume",
        "kubernetes:apps/v1:StatefulSet",
    }
)
#: Versions AWS only moves forward, by the input that holds them: "Once you upgrade
#: a cluster, you can't downgrade to a previous version" (EKS user guide, "Update
#: existing cluster to new Kubernetes version"); RDS and ElastiCache upgrade engine
#: versions and have no downgrade either. A target with an older one fails there.
FORWARD_ONLY_VERSIONS = {
    "aws:eks/cluster:Cluster": "version",
    "aws:rds/instance:Instance": "engineVersion",
    "aws:elasticache/replicationGroup:ReplicationGroup": "engineVersion",
}
#: Helm releases of controllers that own cloud resources outside Pulumi's state, by
#: release name, with what they own. A target without one deletes the controller and
#: strands those: left running, unmanaged, and the objects that hold them (the
#: edge's Service, Karpenter's NodeClaims) wait forever on its finalizer.
OWNING_CONTROLLERS = {
    "aws-load-balancer-controller": "the edge's Network Load Balancer and its target groups",
    "karpenter": "the nodes it launched (EC2 instances) and their launch templates",
}
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
SYNTH_TIMEOUT_S = 900
#: The Alembic revisions the migration Job applies (`alembic upgrade head`).
MIGRATIONS_DIR = Path("services/migrations/versions")
#: The policy pack every update runs with, and its per-stack config.
POLICY_PACK_DIR = Path("policies")


class RollbackError(RuntimeError):
    """A precondition of the rollback does not hold."""


@dataclass(frozen=True)
class Refusal:
    """Why the plan must not run."""

    kind: str  # provider | stateful | version | controller | config | schema | image
    message: str


@dataclass
class RollbackPlan:
    """The plan between the deployed commit and the target, with its refusals."""

    stack: str
    current_commit: str
    target_commit: str
    plan: Plan
    refusals: list[Refusal] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: Plain config the target's own update recorded (e.g. its image digest).
    target_config: dict[str, str] = field(default_factory=dict)

    @property
    def allowed(self) -> bool:
        """True when nothing refuses the rollback."""
        return not self.refusals

    def render_text(self) -> str:
        """Deterministic plain text for the terminal."""
        lines = [
            f"rollback plan for stack {self.stack}: {self.current_commit[:12]} -> "
            f"{self.target_commit[:12]}",
            summary_line(self.plan),
        ]
        for change in self.plan.changes:
            lines.append(f"  {change.action:<8} {change.urn}")
            for prop in change.properties:
                if change.action == "create":
                    continue
                flag = " (forces replacement)" if prop.replaces else ""
                lines.append(
                    f"             {prop.path}: {json.dumps(prop.before, default=str)} -> "
                    f"{json.dumps(prop.after, default=str)}{flag}"
                )
        for warning in self.warnings:
            lines.append(f"warning: {warning}")
        if self.refusals:
            lines.append("REFUSED:")
            lines.extend(f"  [{r.kind}] {r.message}" for r in self.refusals)
        else:
            lines.append("allowed: nothing in this plan refuses the rollback")
        return "\n".join(lines) + "\n"

    def render_markdown(self) -> str:
        """The plan for a pull request or an issue."""
        verdict: list[str] = []
        if self.refusals:
            verdict.append("**Refused:**")
            verdict.append("")
            verdict.extend(f"- **{r.kind}**: {r.message}" for r in self.refusals)
        else:
            verdict.append("**Allowed**: nothing in this plan refuses the rollback.")
        if self.warnings:
            verdict.append("")
            verdict.extend(f"- warning: {w}" for w in self.warnings)
        return render_markdown(
            self.plan,
            title=f"Rollback plan: `{self.stack}` {self.current_commit[:12]} -> "
            f"{self.target_commit[:12]}",
            footer="\n".join(verdict),
            stack_marker=False,
        )


# --- git --------------------------------------------------------------------------


def git(repo: Path, *args: str) -> str:
    """Run git in `repo` and return its stdout (stripped)."""
    result = subprocess.run(  # noqa: S603 (fixed git subcommands)
        ["git", *args],  # noqa: S607
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RollbackError(f"git {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout.strip()


def resolve(repo: Path, ref: str) -> str:
    """A full commit id for `ref`."""
    return git(repo, "rev-parse", "--verify", f"{ref}^{{commit}}")


def dirty(repo: Path, ignore: Sequence[str] = ()) -> list[str]:
    """Uncommitted changes to tracked or untracked files (ignored files aside).

    `ignore` lists repository paths whose changes do not count: the stack's
    own file, where a deployment keeps the secrets it sets and never commits.
    """
    out = git(repo, "status", "--porcelain", "--untracked-files=normal")
    return [line for line in out.splitlines() if line.strip() and line[3:] not in ignore]


@contextlib.contextmanager
def worktree(repo: Path, commit: str) -> Iterator[Path]:
    """A temporary detached worktree of `commit`, removed afterwards."""
    parent = Path(tempfile.mkdtemp(prefix="enterprisehub-rollback-"))
    path = parent / commit[:12]
    git(repo, "worktree", "add", "--detach", "--quiet", str(path), commit)
    try:
        yield path
    finally:
        with contextlib.suppress(RollbackError):
            git(repo, "worktree", "remove", "--force", str(path))
        with contextlib.suppress(OSError):
            parent.rmdir()


# --- synthesis and config ---------------------------------------------------------


@dataclass(frozen=True)
class Synthesized:
    """One commit's synthesis, or why it failed."""

    document: dict[str, Any] | None
    exit_code: int
    error: str


def synthesize(tree: Path, stack: str, out: Path) -> Synthesized:
    """`python -m infra.synth` of the commit checked out at `tree`, with its stack config."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # `-m` puts the working directory first on sys.path: the worktree's own code runs.
    result = subprocess.run(  # noqa: S603 (our interpreter, fixed module)
        [sys.executable, "-m", "infra.synth", "--stack", stack, "--out", str(out)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=SYNTH_TIMEOUT_S,
        check=False,
    )
    if result.returncode != 0:
        return Synthesized(None, result.returncode, (result.stderr or result.stdout).strip())
    return Synthesized(load_document(out), 0, "")


def _project(tree: Path) -> dict[str, Any]:
    data = yaml.safe_load((tree / "Pulumi.yaml").read_text()) or {}
    return data if isinstance(data, dict) else {}


def stack_file_path(tree: Path, stack: str) -> Path:
    """`<stackConfigDir>/Pulumi.<stack>.yaml` of a checkout."""
    return tree / str(_project(tree).get("stackConfigDir", ".")) / f"Pulumi.{stack}.yaml"


def _stack_config_keys(tree: Path, stack: str, project_name: str) -> set[str]:
    path = stack_file_path(tree, stack)
    if not path.is_file():
        return set()
    data = yaml.safe_load(path.read_text()) or {}
    config = data.get("config") or {}
    return {k if ":" in k else f"{project_name}:{k}" for k in config}


def missing_config(
    target: Path, current: Path, stack: str, recorded: Sequence[str] = ()
) -> list[str]:
    """Keys the target's Pulumi.yaml requires that nothing at hand provides.

    At hand: the target's stack file, the working copy's (where a deployment
    keeps its secrets) and the `recorded` keys of the target's own update.
    """
    project = _project(target)
    name = str(project.get("name", ""))
    required = {
        key if ":" in key else f"{name}:{key}"
        for key, spec in (project.get("config") or {}).items()
        if isinstance(spec, Mapping) and "default" not in spec and "value" not in spec
    }
    have = _stack_config_keys(target, stack, name) | _stack_config_keys(current, stack, name)
    return sorted(required - have - set(recorded))


# --- the checks -------------------------------------------------------------------


def _package(resource_type: str) -> str:
    if resource_type.startswith("pulumi:providers:"):
        return resource_type.split(":")[2]
    return resource_type.split(":")[0]


def _packages(document: Mapping[str, Any]) -> set[str]:
    return {
        _package(r["type"])
        for r in document.get("resources", [])
        if r.get("custom", True) and not r["type"].startswith("pulumi:pulumi:")
    }


def provider_refusals(
    current: Mapping[str, Any], target: Mapping[str, Any], p: Plan
) -> list[Refusal]:
    """Providers the target lacks but the resources created since need."""
    refusals = []
    current_resources = {r["urn"]: r for r in current.get("resources", [])}
    missing = sorted(_packages(current) - _packages(target))
    for package in missing:
        users = sorted(
            r["urn"]
            for r in current.get("resources", [])
            if r.get("custom", True) and _package(r["type"]) == package
        )
        refusals.append(
            Refusal(
                "provider",
                f"the target declares no `{package}` provider or resource, but {len(users)} "
                f"resource(s) of the current state use it (first: {users[0]}); deleting them "
                f"needs the `{package}` plugin, which the target's program does not install. "
                "Remove them in a forward change first, then roll back.",
            )
        )
    deleted = {c.urn for c in p.of("delete")}
    target_urns = {r["urn"] for r in target.get("resources", [])}
    for change in p.of("delete"):
        if not change.type.startswith("pulumi:providers:"):
            continue
        kept = sorted(
            urn
            for urn, r in current_resources.items()
            if r.get("provider") == change.urn and urn in target_urns
        )
        if kept:
            refusals.append(
                Refusal(
                    "provider",
                    f"provider {change.urn} would be deleted while {len(kept)} resource(s) it "
                    f"manages stay (first: {kept[0]}); they would have to move to another provider",
                )
            )
        sources = sorted(
            urn
            for urns in current_resources[change.urn].get("propertyDependencies", {}).values()
            for urn in urns
            if urn in deleted
        )
        managed = [u for u, r in current_resources.items() if r.get("provider") == change.urn]
        if sources and managed:
            refusals.append(
                Refusal(
                    "provider",
                    f"provider {change.urn} is configured from {sources[0]}, which is deleted in "
                    f"the same update; the engine could not reach the {len(managed)} resource(s) "
                    "it must delete through that provider",
                )
            )
    return refusals


def _protected(resource: Mapping[str, Any] | None) -> bool:
    options = (resource or {}).get("options", {})
    return bool(options.get("protect") or options.get("retainOnDelete"))


def stateful_refusals(p: Plan) -> tuple[list[Refusal], list[str]]:
    """Stateful resources deleted or replaced; refused unless protected (then warned)."""
    refusals: list[Refusal] = []
    warnings: list[str] = []
    changes: list[ResourceChange] = [*p.of("replace"), *p.of("delete")]
    for change in changes:
        if change.type not in STATEFUL_TYPES:
            continue
        verb = "deleted" if change.action == "delete" else "replaced"
        if _protected(change.before):
            warnings.append(
                f"{change.urn} is protected: the engine will stop rather than have it {verb}"
            )
            continue
        why = f" (because of {', '.join(change.replace_reasons)})" if change.replace_reasons else ""
        refusals.append(
            Refusal(
                "stateful",
                f"{change.type} {change.urn} would be {verb}{why} and is not protected; its data "
                "would be lost. Keep it in the target (a forward fix), or protect it and handle "
                "it by hand.",
            )
        )
    return refusals, warnings


def _version_numbers(value: Any) -> tuple[int, ...] | None:
    """``"1.35"`` -> ``(1, 35)``; None for anything but dotted numbers (unknown, absent)."""
    text = str(value)
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)*", text):
        return None
    return tuple(int(part) for part in text.split("."))


def version_refusals(p: Plan) -> list[Refusal]:
    """Updates that would move a forward-only version back (`FORWARD_ONLY_VERSIONS`).

    Compared on the parts both versions give: ``15`` and ``15.8`` are the same
    major, which pulumi-aws leaves as it is.
    """
    refusals = []
    for change in p.of("update"):
        key = FORWARD_ONLY_VERSIONS.get(change.type)
        for prop in change.properties:
            if prop.path != key:
                continue
            before, after = _version_numbers(prop.before), _version_numbers(prop.after)
            if before is None or after is None:
                continue
            common = min(len(before), len(after))
            if after[:common] < before[:common]:
                refusals.append(
                    Refusal(
                        "version",
                        f"{change.urn} would go from {key} {prop.before} back to {prop.after}; "
                        "AWS never downgrades it, so the update would fail there after "
                        "changing other resources. Roll back to a target at the current "
                        f"version (pin {key} {prop.before} in a forward change).",
                    )
                )
    return refusals


def controller_refusals(p: Plan) -> list[Refusal]:
    """Deletions of a controller that owns cloud resources (`OWNING_CONTROLLERS`)."""
    refusals = []
    for change in p.of("delete"):
        if change.type != HELM_RELEASE:
            continue
        release = str((change.before or {}).get("inputs", {}).get("name", ""))
        owned = OWNING_CONTROLLERS.get(release)
        if owned is None:
            continue
        refusals.append(
            Refusal(
                "controller",
                f"{change.urn} ({release}) would be deleted: it owns {owned}, which Pulumi "
                "does not track. Without it they stay, unmanaged and billed, and the objects "
                "holding them wait on its finalizer. Roll back to a target that keeps it "
                "(a forward change), or remove what it manages first.",
            )
        )
    return refusals


def _literal_assignments(module: ast.Module, names: set[str]) -> dict[str, Any]:
    """Top-level ``name = <literal>`` (annotated or not) of a module, never executed."""
    found: dict[str, Any] = {}
    for node in module.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            target, value = node.target.id, node.value
        elif (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
        ):
            target, value = node.targets[0].id, node.value
        else:
            continue
        if target in names and value is not None:
            with contextlib.suppress(ValueError):
                found[target] = ast.literal_eval(value)
    return found


def migration_revisions(tree: Path) -> dict[str, tuple[str, ...]]:
    """Each Alembic revision of a checkout with the revisions it follows.

    Read from the files' ``revision``/``down_revision`` assignments; the
    migrations are not imported (they would import the running code, not the
    checkout's).
    """
    revisions: dict[str, tuple[str, ...]] = {}
    folder = tree / MIGRATIONS_DIR
    if not folder.is_dir():
        return revisions
    for path in sorted(folder.glob("*.py")):
        values = _literal_assignments(
            ast.parse(path.read_text(encoding="utf-8"), filename=str(path)),
            {"revision", "down_revision"},
        )
        revision = values.get("revision")
        if not isinstance(revision, str):
            continue
        down = values.get("down_revision")
        if isinstance(down, str):
            revisions[revision] = (down,)
        elif isinstance(down, (tuple, list)):
            revisions[revision] = tuple(str(d) for d in down)
        else:
            revisions[revision] = ()
    return revisions


def schema_refusals(current: Path, target: Path) -> list[Refusal]:
    """The deployed schema's heads that the target's migrations do not know.

    The deployed commit's migration Job succeeded (it gates the rollout), so the
    database is at that commit's heads. The target's Job runs `alembic upgrade
    head` against it; Alembic cannot place a revision it has no file for and
    fails, and the update stops before any Deployment rolls back.
    """
    deployed = migration_revisions(current)
    known = migration_revisions(target)
    followed = {down for downs in deployed.values() for down in downs}
    unknown = sorted(set(deployed) - followed - set(known))
    if not unknown:
        return []
    newer = sorted(set(deployed) - set(known))
    return [
        Refusal(
            "schema",
            f"the database is at revision {', '.join(unknown)} ({MIGRATIONS_DIR}), which the "
            f"target does not have ({len(newer)} revision(s) newer than it: {', '.join(newer)}); "
            "its migration Job (`alembic upgrade head`) would fail with \"Can't locate "
            'revision" and stop the update before any Deployment rolls back. Fix forward '
            "(revert the code in a new commit that keeps these migrations), or downgrade the "
            "schema to a revision the target knows first.",
        )
    ]


# --- plan ---------------------------------------------------------------------------


def default_target(updates: Sequence[hist.Update]) -> str:
    """The commit of the last successful update before the current one."""
    return str(hist.previous_update(updates).commit)


def build_plan(
    repo: Path,
    stack: str,
    current_commit: str,
    target_commit: str,
    recorded: Mapping[str, str] | None = None,
) -> RollbackPlan:
    """Synthesize both commits in temporary worktrees and check the plan between them.

    `recorded` is the plain config the target's update ran with (history).
    """
    recorded = dict(recorded or {})
    with (
        tempfile.TemporaryDirectory(prefix="enterprisehub-synth-") as scratch,
        worktree(repo, current_commit) as current_tree,
        worktree(repo, target_commit) as target_tree,
    ):
        current = synthesize(current_tree, stack, Path(scratch) / "current")
        target = synthesize(target_tree, stack, Path(scratch) / "target")
        missing = missing_config(target_tree, repo, stack, tuple(recorded))
        schema = schema_refusals(current_tree, target_tree)
        image = deployed_image(
            carried_stack_document(repo, target_tree, stack, recorded),
            str(_project(target_tree).get("name", "")),
        )
    if current.document is None:
        raise RollbackError(
            f"the current commit {current_commit[:12]} does not synthesize for {stack}: "
            f"{current.error}"
        )
    refusals: list[Refusal] = list(schema)
    warnings: list[str] = []
    if image is not None:
        checked = check_image(image)
        if checked.refusal:
            refusals.append(Refusal("image", checked.refusal))
        if checked.note:
            warnings.append(checked.note)
    if missing:
        refusals.append(
            Refusal(
                "config",
                f"the target requires config {', '.join(missing)}, which neither its stack file "
                f"nor the current stacks/Pulumi.{stack}.yaml sets (pulumi config set [--secret])",
            )
        )
    if target.document is None:
        refusals.append(
            Refusal(
                "config",
                f"the target commit {target_commit[:12]} does not synthesize with its stack "
                "config: "
                f"{target.error}",
            )
        )
        empty = plan(current.document, current.document)
        return RollbackPlan(
            stack, current_commit, target_commit, empty, refusals, warnings, recorded
        )
    result = plan(current.document, target.document)
    refusals += provider_refusals(current.document, target.document, result)
    stateful, stateful_warnings = stateful_refusals(result)
    refusals += stateful
    refusals += version_refusals(result)
    refusals += controller_refusals(result)
    warnings += stateful_warnings
    return RollbackPlan(
        stack, current_commit, target_commit, result, refusals, warnings, target_config=recorded
    )


def plan_rollback(repo: Path, stack: str, to: str | None = None) -> RollbackPlan:
    """`rollback-plan`: the current commit from the history, the target from `to` or the history."""
    updates = hist.load_history(stack, repo)
    current = hist.current_update(updates)
    if not current.commit:
        raise RollbackError(
            f"update {current.version} of {stack} recorded no git commit (git.head); "
            "run updates from a git checkout"
        )
    target = resolve(repo, to) if to else default_target(updates)
    current_commit = resolve(repo, current.commit)
    if target == current_commit:
        raise RollbackError(f"{to or target} is the commit already deployed")
    planned = build_plan(repo, stack, current_commit, target, hist.recorded_config(updates, target))
    planned.refusals += window_refusals(updates, target)
    return planned


def window_refusals(updates: Sequence[hist.Update], target: str) -> list[Refusal]:
    """A target further back than the registry promises to keep images for."""
    back = hist.releases_back(updates, target)
    if back is None or back <= ROLLBACK_WINDOW:
        return []
    return [
        Refusal(
            "image",
            f"the target is {back} deployed commits back; a rollback reaches back at most "
            f"{ROLLBACK_WINDOW} (the stack's ECR repository keeps the newest {KEEP_IMAGES} "
            "images, one per deploy attempt, and expires older ones within a day, even during "
            "the update). Roll back to a newer target, or fix forward (revert the code in a new "
            "commit).",
        )
    ]


# --- rollback -----------------------------------------------------------------------


@dataclass(frozen=True)
class Health:
    """One health probe of a deployed service."""

    url: str
    ok: bool
    detail: str


HealthCheck = Callable[[str], Health]


def probe(url: str) -> Health:
    """GET `url`; healthy on a 2xx answer."""
    if urlparse(url).scheme not in {"http", "https"}:
        return Health(url, False, "not an http(s) URL")
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 (scheme checked)
            return Health(url, 200 <= resp.status < 300, f"HTTP {resp.status}")
    except urllib.error.HTTPError as exc:
        exc.close()
        return Health(url, False, f"HTTP {exc.code}")
    except OSError as exc:
        return Health(url, False, type(exc).__name__)


def health_urls(outputs: Mapping[str, Any]) -> list[str]:
    """What to probe: the `healthUrls` output, else each public URL's /health."""
    explicit = outputs.get("healthUrls")
    if isinstance(explicit, Mapping):
        return sorted(str(v) for v in explicit.values())
    if isinstance(explicit, list):
        return sorted(str(v) for v in explicit)
    urls: set[str] = set()
    if isinstance(outputs.get("apiUrl"), str):
        urls.add(outputs["apiUrl"].rstrip("/") + "/health")
    return sorted(urls)


def carried_stack_document(
    current: Path, target: Path, stack: str, recorded: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The target's stack file completed with what git does not hold.

    The stack files in git hold no ciphertext; each deployment sets its
    secrets in its working copy, and CI sets out-of-band keys (the image
    digest) the same way. So the target gets the working copy's secrets and
    secrets-provider state, and the plain values its own update recorded for
    keys its file lacks. The target's own plain config always wins.
    """
    source = stack_file_path(current, stack)
    dest = stack_file_path(target, stack)
    have = yaml.safe_load(source.read_text()) if source.is_file() else {}
    want = yaml.safe_load(dest.read_text()) if dest.is_file() else {}
    have, want = have or {}, want or {}
    for key in ("secretsprovider", "encryptionsalt", "encryptedkey"):
        if key in have and key not in want:
            want[key] = have[key]
    config = dict(want.get("config") or {})
    for key, value in (have.get("config") or {}).items():
        if isinstance(value, Mapping) and "secure" in value and key not in config:
            config[key] = value
    for key, text in sorted((recorded or {}).items()):
        short = key.split(":", 1)[1] if key.startswith(f"{_project(target).get('name')}:") else None
        if key in config or (short is not None and short in config):
            continue
        config[key] = _decode(text)
    want["config"] = config
    return want


def deployed_image(document: Mapping[str, Any], project: str) -> str | None:
    """The `image` a completed stack file of `project` deploys (None when it sets none)."""
    config = document.get("config") or {}
    for key in (f"{project}:image", "image"):
        value = config.get(key)
        if isinstance(value, str):
            return value
    return None


def _carry_config(
    current: Path, target: Path, stack: str, recorded: Mapping[str, str] | None = None
) -> None:
    """Write the completed stack file (`carried_stack_document`) into the target."""
    document = carried_stack_document(current, target, stack, recorded)
    dest = stack_file_path(target, stack)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(yaml.safe_dump(document, sort_keys=False))


def _decode(text: str) -> Any:
    """A recorded config value back to what a stack file holds (objects were JSON-encoded)."""
    if text[:1] in "[{":
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    return text


def use_this_virtualenv(tree: Path) -> dict[str, str]:
    """Let `pulumi up` in ``tree`` run the program with this process's interpreter.

    A fresh worktree has no virtualenv. For a Pulumi.yaml that names one, the
    CLI would create it empty (it installs only a requirements.txt, and this
    project installs from uv.lock), and the program would fail on
    ``import pulumi``. The virtualenv that synthesized the plan is linked in
    instead, so the update runs what was planned, on the provider versions the
    stack already uses. Returns the environment the CLI needs besides:
    ``PYTHONPATH`` names the worktree, because the language host puts only the
    program's folder (``infra/``) on ``sys.path`` and that virtualenv's editable
    install points ``import infra`` at the deployer's checkout, which would
    deploy the current code with the target's config.
    """
    env = {"PYTHONPATH": str(tree)}
    runtime = _project(tree).get("runtime")
    options = runtime.get("options") if isinstance(runtime, Mapping) else None
    venv = options.get("virtualenv") if isinstance(options, Mapping) else None
    if not venv:
        # No virtualenv option: the CLI runs `python3` from PATH unless told otherwise.
        return {**env, "PULUMI_PYTHON_CMD": sys.executable}
    path = Path(str(venv))
    if not path.is_absolute():
        path = tree / path
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.symlink_to(Path(sys.prefix), target_is_directory=True)
    return env


def policy_pack_arguments(tree: Path, stack: str) -> tuple[list[str], list[str]]:
    """The target's own policy pack and its stack config, as a deploy's `up` gets them.

    Empty when the target has no pack (a commit from before it existed).
    """
    pack = tree / POLICY_PACK_DIR
    if not (pack / "PulumiPolicy.yaml").is_file():
        return [], []
    config = pack / "config" / f"{stack}.json"
    return [str(pack)], [str(config)] if config.is_file() else []


@dataclass
class RollbackReport:
    """What `rollback` did."""

    plan: RollbackPlan
    result: str = "not-run"
    health: list[Health] = field(default_factory=list)

    def render_markdown(self) -> str:
        """Plan, update result and health, for the run summary or an issue."""
        lines = [self.plan.render_markdown(), f"**Update**: {self.result}", ""]
        if self.health:
            lines.append("| health check | result |")
            lines.append("|---|---|")
            lines.extend(
                f"| {h.url} | {'ok' if h.ok else 'FAILED'} ({h.detail}) |" for h in self.health
            )
        else:
            lines.append("No health URL in the stack outputs (export `healthUrls` or `apiUrl`).")
        return "\n".join(lines) + "\n"

    @property
    def healthy(self) -> bool:
        """Every probe answered 2xx."""
        return all(h.ok for h in self.health)


def rollback(
    repo: Path,
    stack: str,
    to: str | None = None,
    *,
    check: HealthCheck = probe,
    on_output: Callable[[str], None] | None = None,
) -> RollbackReport:
    """Plan, refuse if needed, then `up` the target commit and check health."""
    stack_file = stack_file_path(repo, stack).relative_to(repo).as_posix()
    changes = dirty(repo, ignore=(stack_file,))
    if changes:
        raise RollbackError(
            f"the working tree has uncommitted changes ({len(changes)}: {changes[0].strip()}); "
            "commit or stash them first"
        )
    updates = hist.load_history(stack, repo)
    if updates and updates[0].in_progress:
        raise RollbackError(
            f"update {updates[0].version} of {stack} is still in progress; wait for it, or "
            "`pulumi cancel` it if its process is gone"
        )
    planned = plan_rollback(repo, stack, to)
    report = RollbackReport(planned)
    if not planned.allowed:
        report.result = "refused"
        return report
    with worktree(repo, planned.target_commit) as tree:
        _carry_config(repo, tree, stack, planned.target_config)
        selected = auto.select_stack(
            stack_name=stack,
            work_dir=str(tree),
            opts=auto.LocalWorkspaceOptions(env_vars=use_this_virtualenv(tree)),
        )
        packs, pack_configs = policy_pack_arguments(tree, stack)
        try:
            up = selected.up(
                message=hist.rollback_message(planned.target_commit, planned.current_commit),
                on_output=on_output,
                # The same guardrails as a deploy (mandatory in staging and production).
                policy_packs=packs,
                policy_pack_configs=pack_configs,
            )
        except auto.CommandError as exc:
            report.result = (
                f"failed: {str(exc).strip().splitlines()[-1] if str(exc).strip() else exc}"
            )
            return report
        report.result = str(up.summary.result)
        outputs = {k: v.value for k, v in up.outputs.items()}
    report.health = [check(url) for url in health_urls(outputs)]
    return report
