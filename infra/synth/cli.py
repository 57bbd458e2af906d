"""Offline synthesis: `python -m infra.synth --stack NAME --out DIR`.

Runs the real Pulumi program under the recording mocks (`infra.synth.mocks`) with the
stack's config, then writes

* `DIR/resources.json`: every resource with its type, logical name, URN,
  parent, provider, dependencies and inputs, secrets masked. The format is a
  contract read by the policy pack and the pull-request diff; it is documented
  in `docs/resources-json.md` and versioned by `schemaVersion`.
* `DIR/manifests/`: one YAML file per Kubernetes object (`infra.synth.manifests`).

No cloud credentials, Pulumi CLI or cluster are needed. Secrets come from
`--secrets-file`, from `ENTERPRISEHUB_SYNTH_<KEY>` environment variables, or are
deterministic stand-ins; their values are never printed or written.

Exit status: 0 on success, 2 for invalid input (the stack's config, a missing
stack file, a bad secrets file, a physical name the AWS provider would reject:
see `infra.synth.naming`), 1 for anything else.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.problems import PROJECT, StackConfigError
from infra.stackfiles import REPO_ROOT
from infra.synth.inputs import SecretsFileError, StackInputs, stack_inputs
from infra.synth.manifests import Manifest, manifests_for, write_manifests
from infra.synth.mock_values import DEFAULT_ACCOUNT_ID, DEFAULT_REGION, UnmockedCallError
from infra.synth.mocks import (
    DEFAULT_PROGRAM,
    ProgramRun,
    RecordedResource,
    mask_secrets,
    normalize_numbers,
    run_program,
)
from infra.synth.naming import PhysicalNameError

SCHEMA_VERSION = 1
RESOURCES_FILE = "resources.json"
MANIFESTS_DIR = "manifests"
GENERATOR = "infra.synth"


@dataclass(frozen=True)
class Synthesis:
    """The outcome of one synthesis: the run, the document and the files written."""

    inputs: StackInputs
    run: ProgramRun
    document: dict[str, Any]
    manifests: list[Manifest]
    out: Path
    seconds: float

    @property
    def manifests_dir(self) -> Path:
        """Where the manifests were written."""
        return self.out / MANIFESTS_DIR


def run_stack(inputs: StackInputs, *, program: str = DEFAULT_PROGRAM) -> ProgramRun:
    """Run the program under the mocks with the stack's config."""
    region = inputs.get("aws:region") or inputs.get("awsRegion") or DEFAULT_REGION
    return run_program(
        inputs.stack, inputs.config, inputs.secrets, program=program, project=PROJECT, region=region
    )


def resource_entry(resource: RecordedResource) -> dict[str, Any]:
    """One resource in resources.json (see docs/resources-json.md)."""
    return {
        "urn": resource.urn,
        "type": resource.type,
        "name": resource.name,
        "custom": resource.custom,
        "parent": resource.parent,
        "provider": resource.provider,
        "dependencies": sorted(set(resource.dependencies)),
        "propertyDependencies": {
            key: sorted(set(urns))
            for key, urns in sorted(resource.property_dependencies.items())
            if urns
        },
        "inputs": normalize_numbers(mask_secrets(resource.raw_inputs)),
        "options": {
            "protect": resource.protect,
            "external": resource.external,
            "deleteBeforeReplace": resource.delete_before_replace,
            "retainOnDelete": resource.retain_on_delete,
            "ignoreChanges": sorted(set(resource.ignore_changes)),
            "additionalSecretOutputs": sorted(set(resource.additional_secret_outputs)),
        },
    }


def build_document(inputs: StackInputs, run: ProgramRun) -> dict[str, Any]:
    """The whole resources.json document."""
    resources = sorted(run.resources, key=lambda r: r.urn)
    config = {key: inputs.config[key] for key in sorted(inputs.config)}
    config.update({key: "[secret]" for key in inputs.secrets})
    return {
        "schemaVersion": SCHEMA_VERSION,
        "generator": GENERATOR,
        "project": run.project,
        "stack": run.stack,
        "config": dict(sorted(config.items())),
        "synthetic": {
            "accountId": DEFAULT_ACCOUNT_ID,
            "sources": dict(sorted(inputs.sources.items())),
            "note": "Computed outputs (ids, ARNs, endpoints) and any value whose source is "
            "'synthetic' are stand-ins produced offline; none is a real credential.",
        },
        "summary": {
            "resourceCount": len(resources),
            "byType": dict(sorted(Counter(r.type for r in resources).items())),
        },
        "resources": [resource_entry(r) for r in resources],
        "stackOutputs": normalize_numbers(mask_secrets(dict(sorted(run.stack_outputs.items())))),
    }


def synthesize(
    stack: str,
    out: Path,
    *,
    root: Path = REPO_ROOT,
    secrets_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    program: str = DEFAULT_PROGRAM,
) -> Synthesis:
    """Run the program for `stack` and write resources.json and manifests/ under `out`.

    `root` holds Pulumi.yaml and the stack files; `environ` (default: the
    process environment) may carry ENTERPRISEHUB_SYNTH_<KEY> values.
    """
    started = time.perf_counter()
    inputs = stack_inputs(stack, root=root, secrets_file=secrets_file, environ=environ)
    run = run_stack(inputs, program=program)
    document = build_document(inputs, run)
    manifests = manifests_for(run.resources)
    out.mkdir(parents=True, exist_ok=True)
    (out / RESOURCES_FILE).write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")
    write_manifests(manifests, out / MANIFESTS_DIR)
    return Synthesis(inputs, run, document, manifests, out, time.perf_counter() - started)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m infra.synth",
        description="Run the Pulumi program offline under mocks and write resources.json "
        "and one Kubernetes manifest per object.",
    )
    parser.add_argument("--stack", required=True, help="stack name (stacks/Pulumi.<stack>.yaml)")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument(
        "--secrets-file",
        type=Path,
        help="YAML/JSON mapping of config key to value for the stack's secrets (test values "
        "only); otherwise ENTERPRISEHUB_SYNTH_<KEY> variables, else synthetic stand-ins",
    )
    parser.add_argument(
        "--project-dir",
        type=Path,
        default=REPO_ROOT,
        help="directory holding Pulumi.yaml and the stack files (default: the repository)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        result = synthesize(
            args.stack, args.out, root=args.project_dir, secrets_file=args.secrets_file
        )
    except (StackConfigError, SecretsFileError, FileNotFoundError, PhysicalNameError) as error:
        print(f"infra.synth: {error}", file=sys.stderr)
        return 2
    except UnmockedCallError as error:
        # A gap in the mocks, not in the stack: say which data source to add.
        print(f"infra.synth: {error}", file=sys.stderr)
        return 1
    kubernetes = len(result.manifests)
    print(
        f"infra.synth: stack '{args.stack}': {len(result.run.resources)} resources, "
        f"{kubernetes} Kubernetes manifests -> {args.out} ({result.seconds:.2f} s)"
    )
    synthetic = sorted(k for k, v in result.inputs.sources.items() if v == "synthetic")
    if synthetic:
        print(f"infra.synth: synthetic stand-ins for: {', '.join(synthetic)}")
    return 0
