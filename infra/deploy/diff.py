"""What changes between two offline syntheses of a stack.

`plan(before, after)` compares two `resources.json` documents (the contract in
docs/resources-json.md) the way the engine would compare the old and the new
program: by URN. A resource only in `after` is created, one only in `before`
is deleted, and one in both is updated when an input or option changed, or
replaced when a changed input is one the provider cannot change in place
(`REPLACE_ON`), or its explicit provider changed. The same plan drives the
pull-request comment (`python -m infra.deploy.diff`) and the rollback plan
(`infra.deploy.rollback`).

Output is deterministic (sorted by action, then URN) and never shows a secret:
the synthesis already masks what the program marks secret, and values under
keys that name a credential are masked here too, in case a program forgot.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
MASK = "[secret]"
ACTIONS = ("create", "update", "replace", "delete")
ACTION_SYMBOL = {"create": "+", "update": "~", "replace": "+-", "delete": "-"}

#: GitHub rejects an issue comment above 65,536 characters; keep a margin for
#: the marker and the trimming note.
GITHUB_COMMENT_LIMIT = 65_536
DEFAULT_BUDGET = 60_000

#: Keys whose values are credentials whatever the program says.
_SECRET_KEY = re.compile(r"(?i)(password|passwd|secret|token|private_?key|api_?key|credential)")

#: Inputs a provider cannot change in place: a change replaces the resource.
#: Taken from the providers' schemas (`forceNew` properties) for the types the
#: program declares; Kubernetes objects are replaced when renamed or moved. An
#: entry is a property or a dotted path into one (a nested `forceNew` field):
#: a change at or below it replaces.
REPLACE_ON: Mapping[str, frozenset[str]] = {
    "aws:rds/instance:Instance": frozenset(
        {
            "identifier",
            "identifierPrefix",
            "dbName",
            "engine",
            "username",
            "storageEncrypted",
            "kmsKeyId",
            "availabilityZone",
            "characterSetName",
            "timezone",
        }
    ),
    "aws:elasticache/replicationGroup:ReplicationGroup": frozenset(
        {
            "replicationGroupId",
            "atRestEncryptionEnabled",
            "kmsKeyId",
            "port",
            "subnetGroupName",
            "engine",
            "snapshotArns",
        }
    ),
    "aws:s3/bucket:Bucket": frozenset({"bucket", "bucketPrefix", "objectLockEnabled"}),
    "aws:eks/cluster:Cluster": frozenset(
        {
            "name",
            "roleArn",
            "encryptionConfig",
            "kubernetesNetworkConfig",
            "outpostConfig",
            "bootstrapSelfManagedAddons",
            # Only the creation request carries it (EKS never reports it back).
            "accessConfig.bootstrapClusterCreatorAdminPermissions",
        }
    ),
    "aws:eks/nodeGroup:NodeGroup": frozenset(
        {
            "clusterName",
            "nodeGroupName",
            "nodeRoleArn",
            "subnetIds",
            "instanceTypes",
            "capacityType",
            "diskSize",
            "amiType",
            # The template a group launches from is fixed at creation (adding one
            # included); its version changes in place, rolling the nodes.
            "launchTemplate.id",
            "launchTemplate.name",
        }
    ),
    "aws:ec2/vpc:Vpc": frozenset({"cidrBlock", "instanceTenancy"}),
    "aws:ec2/subnet:Subnet": frozenset(
        {"vpcId", "cidrBlock", "availabilityZone", "availabilityZoneId"}
    ),
    "aws:ecr/repository:Repository": frozenset({"name", "encryptionConfigurations"}),
    "aws:kms/key:Key": frozenset({"customerMasterKeySpec", "keyUsage", "multiRegion"}),
    "aws:iam/role:Role": frozenset({"name", "namePrefix", "path"}),
    "aws:ec2/securityGroup:SecurityGroup": frozenset(
        {"name", "namePrefix", "vpcId", "description"}
    ),
    "random:index/randomPassword:RandomPassword": frozenset(
        {"length", "special", "upper", "lower", "numeric", "overrideSpecial", "keepers"}
    ),
    "random:index/randomId:RandomId": frozenset({"byteLength", "keepers", "prefix"}),
    "kubernetes:batch/v1:Job": frozenset({"spec"}),
}
_KUBERNETES_REPLACE_ON = frozenset({"metadata.name", "metadata.namespace"})
_KUBERNETES_REPLACE_ON_SPEC = {
    "kubernetes:apps/v1:Deployment": ("spec.selector",),
    "kubernetes:apps/v1:StatefulSet": ("spec.selector", "spec.volumeClaimTemplates"),
    "kubernetes:policy/v1:PodDisruptionBudget": (),
}


class DocumentError(ValueError):
    """A file that is not a resources.json this code understands."""


@dataclass(frozen=True)
class PropertyChange:
    """One input (or option) that differs, by its dotted path."""

    path: str
    before: Any
    after: Any
    replaces: bool = False

    @property
    def kind(self) -> str:
        """added, removed or changed."""
        if self.before is _ABSENT:
            return "added"
        if self.after is _ABSENT:
            return "removed"
        return "changed"


@dataclass(frozen=True)
class ResourceChange:
    """What happens to one resource."""

    action: str
    urn: str
    type: str
    name: str
    properties: tuple[PropertyChange, ...] = ()
    before: Mapping[str, Any] | None = None
    after: Mapping[str, Any] | None = None

    @property
    def replace_reasons(self) -> list[str]:
        """The changed paths that force the replacement."""
        return [p.path for p in self.properties if p.replaces]


@dataclass(frozen=True)
class Plan:
    """Every change between two syntheses, sorted by action then URN."""

    stack: str
    changes: tuple[ResourceChange, ...]
    unchanged: int
    before_count: int
    after_count: int
    config_changes: tuple[PropertyChange, ...] = field(default=())

    def of(self, action: str) -> list[ResourceChange]:
        """The changes of one action."""
        return [c for c in self.changes if c.action == action]

    @property
    def counts(self) -> dict[str, int]:
        """Resources per action, in `ACTIONS` order."""
        return {a: len(self.of(a)) for a in ACTIONS}

    @property
    def empty(self) -> bool:
        """No resource changes."""
        return not self.changes

    def to_json(self) -> dict[str, Any]:
        """A machine-readable form, stable across runs."""
        return {
            "stack": self.stack,
            "summary": {**self.counts, "unchanged": self.unchanged},
            "changes": [
                {
                    "action": c.action,
                    "urn": c.urn,
                    "type": c.type,
                    "properties": [
                        {
                            "path": p.path,
                            "kind": p.kind,
                            "before": _show(p.before),
                            "after": _show(p.after),
                            "replaces": p.replaces,
                        }
                        for p in c.properties
                    ],
                }
                for c in self.changes
            ],
            "config": [
                {"key": p.path, "before": _show(p.before), "after": _show(p.after)}
                for p in self.config_changes
            ],
        }


class _Absent:
    def __repr__(self) -> str:
        return "<absent>"


_ABSENT: Any = _Absent()


def load_document(path: Path) -> dict[str, Any]:
    """Read a resources.json (or the directory holding one) and check its version."""
    if path.is_dir():
        path = path / "resources.json"
    try:
        document = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DocumentError(f"{path}: cannot read a resources.json ({exc})") from exc
    version = document.get("schemaVersion") if isinstance(document, dict) else None
    if not isinstance(document, dict) or version != SCHEMA_VERSION:
        raise DocumentError(
            f"{path}: schemaVersion {version!r}"
            f" is not {SCHEMA_VERSION}; this tool reads the format in docs/resources-json.md"
        )
    return document


def _flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Leaves of a JSON value by dotted path (`a.b[0].c`); empty containers are leaves."""
    if isinstance(value, Mapping) and value:
        for key in sorted(value):
            yield from _flatten(value[key], f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list) and value:
        for index, item in enumerate(value):
            yield from _flatten(item, f"{prefix}[{index}]")
    else:
        yield prefix, value


def _is_secret_path(path: str) -> bool:
    last = re.split(r"[.\[]", path)[-1]
    return bool(_SECRET_KEY.search(last))


def _mask(path: str, value: Any, leaves: Mapping[str, Any] | None = None) -> Any:
    if value is _ABSENT or value == MASK:
        return value
    if _is_secret_path(path):
        return MASK
    # A name/value pair (a container's env entry): the name says what the value is.
    if leaves is not None and path.endswith(".value"):
        name = leaves.get(path[: -len(".value")] + ".name")
        if isinstance(name, str) and _SECRET_KEY.search(name):
            return MASK
    return value


def _show(value: Any) -> Any:
    return None if value is _ABSENT else value


def _at_or_below(path: str, prefix: str) -> bool:
    """True when ``path`` is ``prefix`` or lies inside it (``a.b`` is inside ``a``)."""
    return path == prefix or path.startswith((prefix + ".", prefix + "["))


def _forces_replacement(resource_type: str, path: str) -> bool:
    if any(_at_or_below(path, p) for p in REPLACE_ON.get(resource_type, frozenset())):
        return True
    if resource_type.startswith("kubernetes:"):
        if any(path == p or path.startswith(p + ".") for p in _KUBERNETES_REPLACE_ON):
            return True
        return any(
            path == p or path.startswith((p + ".", p + "["))
            for p in _KUBERNETES_REPLACE_ON_SPEC.get(resource_type, ())
        )
    return False


def property_changes(
    resource_type: str,
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    *,
    prefix: str = "",
    ignore: Sequence[str] = (),
) -> list[PropertyChange]:
    """Leaf-level differences between two input maps, secrets masked.

    Paths at or below an ``ignore`` entry (the resource's ``ignoreChanges``) are
    left out: the engine diffs them with the old value, so they never update or
    replace anything.
    """
    old = dict(_flatten(before)) if before else {}
    new = dict(_flatten(after)) if after else {}
    changes = []
    for path in sorted(set(old) | set(new)):
        if any(_at_or_below(path, ignored) for ignored in ignore):
            continue
        was, now = old.get(path, _ABSENT), new.get(path, _ABSENT)
        if was == now and type(was) is type(now):
            continue
        if was == MASK and now == MASK:
            continue
        changes.append(
            PropertyChange(
                f"{prefix}{path}",
                _mask(path, was, old),
                _mask(path, now, new),
                replaces=not prefix and _forces_replacement(resource_type, path),
            )
        )
    return changes


def _resource_change(old: Mapping[str, Any], new: Mapping[str, Any]) -> ResourceChange | None:
    # The new program's ignoreChanges is the one the engine applies.
    ignored = (new.get("options") or {}).get("ignoreChanges") or ()
    properties = property_changes(
        new["type"], old.get("inputs", {}), new.get("inputs", {}), ignore=ignored
    )
    properties += property_changes(
        new["type"], old.get("options", {}), new.get("options", {}), prefix="options."
    )
    provider_changed = old.get("provider") != new.get("provider")
    if provider_changed:
        properties.append(
            PropertyChange("provider", old.get("provider"), new.get("provider"), replaces=True)
        )
    if not properties:
        return None
    replaces = any(p.replaces for p in properties)
    return ResourceChange(
        "replace" if replaces else "update",
        new["urn"],
        new["type"],
        new["name"],
        tuple(properties),
        old,
        new,
    )


def plan(before: Mapping[str, Any], after: Mapping[str, Any]) -> Plan:
    """The changes that take a stack from `before` to `after` (both resources.json)."""
    old = {r["urn"]: r for r in before.get("resources", [])}
    new = {r["urn"]: r for r in after.get("resources", [])}
    changes: list[ResourceChange] = []
    unchanged = 0
    for urn in sorted(set(old) | set(new)):
        if urn not in old:
            r = new[urn]
            added = tuple(property_changes(r["type"], {}, r.get("inputs", {})))
            changes.append(ResourceChange("create", urn, r["type"], r["name"], added, after=r))
        elif urn not in new:
            r = old[urn]
            changes.append(ResourceChange("delete", urn, r["type"], r["name"], before=r))
        else:
            change = _resource_change(old[urn], new[urn])
            if change is None:
                unchanged += 1
            else:
                changes.append(change)
    order = {a: i for i, a in enumerate(ACTIONS)}
    changes.sort(key=lambda c: (order[c.action], c.urn))
    config = property_changes("", _config_map(before), _config_map(after))
    return Plan(
        stack=str(after.get("stack") or before.get("stack") or ""),
        changes=tuple(changes),
        unchanged=unchanged,
        before_count=len(old),
        after_count=len(new),
        config_changes=tuple(PropertyChange(p.path, p.before, p.after) for p in config),
    )


def _config_map(document: Mapping[str, Any]) -> dict[str, Any]:
    # Config keys contain ':' and '.'-free names; keep them as one path segment.
    return {key.replace(".", "_"): value for key, value in document.get("config", {}).items()}


# --- rendering ---------------------------------------------------------------


def marker(stack: str) -> str:
    """The hidden line that identifies a stack's comment, so a new push edits it."""
    return f"<!-- enterprisehub:synth-diff stack={stack} -->"


def _value(value: Any) -> str:
    if value is _ABSENT:
        return "(absent)"
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 120 else text[:117] + "..."


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def summary_line(p: Plan) -> str:
    """`2 to create, 1 to update, 0 to replace, 0 to delete, 310 unchanged`."""
    c = p.counts
    return (
        f"{c['create']} to create, {c['update']} to update, {c['replace']} to replace, "
        f"{c['delete']} to delete, {p.unchanged} unchanged"
    )


def _short_urn(urn: str) -> str:
    # urn:pulumi:<stack>::<project>::<types>::<name> -> <leaf type>::<name>
    parts = urn.split("::")
    if len(parts) >= 4:
        return f"{parts[-2].split('$')[-1]}::{parts[-1]}"
    return urn


def _details(change: ResourceChange) -> str:
    lines = [f"<details><summary><code>{_short_urn(change.urn)}</code></summary>", ""]
    lines.append(f"`{change.urn}`")
    lines.append("")
    if change.action == "replace":
        lines.append("Replaced because of: " + ", ".join(f"`{r}`" for r in change.replace_reasons))
        lines.append("")
    if change.action == "delete":
        lines.append("Deleted with everything it holds.")
        lines.append("")
    if change.properties:
        lines.append("| property | before | after |")
        lines.append("|---|---|---|")
        for prop in change.properties:
            flag = " (forces replacement)" if prop.replaces else ""
            lines.append(
                f"| `{_cell(prop.path)}`{flag} | `{_cell(_value(prop.before))}` |"
                f" `{_cell(_value(prop.after))}` |"
            )
        lines.append("")
    lines.append("</details>")
    return "\n".join(lines)


def render_markdown(
    p: Plan,
    *,
    title: str | None = None,
    footer: str = "",
    budget: int = DEFAULT_BUDGET,
    stack_marker: bool = True,
) -> str:
    """The plan as a GitHub comment: summary first, details trimmed to `budget` characters.

    The summary table and the list of affected resources always survive; when
    the per-resource details do not fit, the last ones are left out and a note
    says how many.
    """
    head: list[str] = []
    if stack_marker:
        head.append(marker(p.stack))
    head.append(f"### {title or f'Synthesis diff: `{p.stack}`'}")
    head.append("")
    head.append(f"**{summary_line(p)}**")
    head.append("")
    head.append("| action | resources |")
    head.append("|---|---|")
    for action in ACTIONS:
        head.append(f"| {ACTION_SYMBOL[action]} {action} | {p.counts[action]} |")
    head.append("")
    if p.config_changes:
        head.append("Config changes:")
        head.append("")
        for prop in p.config_changes:
            head.append(f"- `{prop.path}`: `{_value(prop.before)}` -> `{_value(prop.after)}`")
        head.append("")
    if p.empty:
        head.append("No resource changes.")
        head.append("")
    tail = [footer] if footer else []

    sections: list[str] = []
    for action in ACTIONS:
        changes = p.of(action)
        if changes:
            sections.append(f"#### {ACTION_SYMBOL[action]} {action} ({len(changes)})")
            sections.extend(_details(c) for c in changes)
    body = "\n".join(head)
    fixed = len(body) + sum(len(t) + 2 for t in tail) + 200
    kept: list[str] = []
    used = fixed
    omitted = 0
    for index, section in enumerate(sections):
        if used + len(section) + 2 > budget:
            omitted = sum(1 for s in sections[index:] if s.startswith("<details>"))
            break
        kept.append(section)
        used += len(section) + 2
    parts = [body, *kept]
    if omitted:
        parts.append(
            f"\n_{omitted} resource details left out to stay under GitHub's comment limit; "
            "the whole plan is in the workflow run's artifacts._"
        )
    parts.extend(tail)
    # Blank lines between blocks: a heading right after </details> would be
    # swallowed by the HTML block.
    text = "\n\n".join(parts).rstrip() + "\n"
    # The summary alone can never exceed the budget in practice; cut hard if it does.
    return text if len(text) <= GITHUB_COMMENT_LIMIT else text[: GITHUB_COMMENT_LIMIT - 1]


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m infra.deploy.diff --base OLD --head NEW [--markdown F] [--json F]`."""
    parser = argparse.ArgumentParser(
        prog="python -m infra.deploy.diff",
        description="Diff two offline syntheses (resources.json) of one stack.",
    )
    parser.add_argument("--base", type=Path, required=True, help="resources.json (or its dir)")
    parser.add_argument("--head", type=Path, required=True, help="resources.json (or its dir)")
    parser.add_argument("--markdown", type=Path, help="write the comment body here")
    parser.add_argument("--json", type=Path, help="write the plan as JSON here")
    parser.add_argument("--budget", type=int, default=DEFAULT_BUDGET)
    args = parser.parse_args(argv)
    try:
        result = plan(load_document(args.base), load_document(args.head))
    except DocumentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = render_markdown(result, budget=args.budget)
    try:
        if args.markdown:
            args.markdown.write_text(text)
        if args.json:
            args.json.write_text(json.dumps(result.to_json(), indent=2, sort_keys=True) + "\n")
    except OSError as exc:
        # An output path that cannot be written is the caller's to fix: one line.
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{result.stack}: {summary_line(result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
