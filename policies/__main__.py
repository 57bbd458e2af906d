"""Two entry points in one file, as Pulumi requires the pack's program here.

* Run by the Pulumi engine (`pulumi preview --policy-pack policies`): the
  engine executes this file by path; it builds the `PolicyPack`, which serves
  the policies to the engine over gRPC until the engine stops it.
* `python -m policies --resources PATH --stack NAME`: runs the same policies
  offline over a synthesis (`python -m infra.synth`), prints each finding and
  exits 1 when a mandatory one is found, 0 otherwise (2 for bad input).
  `python -m policies --write-config` regenerates policies/config/*.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    # Executed by path (the engine): make `policies` importable as a package,
    # and drop this directory from the path so that `kubernetes.py` cannot
    # shadow a library of the same name.
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    sys.path.insert(0, str(here.parent))


def serve() -> None:
    """Build the pack: this starts the analyzer server and does not return."""
    from pulumi_policy import EnforcementLevel, PolicyPack

    from policies.pack import PACK_NAME, POLICIES

    PolicyPack(name=PACK_NAME, policies=POLICIES, enforcement_level=EnforcementLevel.ADVISORY)


def cli(argv: list[str]) -> int:
    """`python -m policies ...`."""
    import argparse
    import json

    from policies.offline import evaluate, load
    from policies.pack import POLICIES, config_path, policy_config, write_configs

    parser = argparse.ArgumentParser(
        prog="python -m policies",
        description="Run the policy pack offline over a synthesis (resources.json).",
    )
    parser.add_argument("--resources", type=Path, help="resources.json or its directory")
    parser.add_argument("--stack", help="stack name: picks the enforcement and thresholds")
    parser.add_argument(
        "--config", type=Path, help="policy config (default: policies/config/STACK.json)"
    )
    parser.add_argument(
        "--write-config", action="store_true", help="regenerate policies/config/*.json"
    )
    args = parser.parse_args(argv)
    if args.write_config:
        for path in write_configs():
            print(f"wrote {path}")
        return 0
    if args.resources is None or args.stack is None:
        parser.error("--resources and --stack are required")
    try:
        document = load(args.resources)
        path = args.config or config_path(args.stack)
        # The stack's generated file may be absent (a new stack): its levels are
        # computed. A --config given by name is read or refused, never skipped.
        if args.config is None and not path.exists():
            config = policy_config(args.stack)
        else:
            config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        where = f"{args.config}: " if args.config is not None else ""
        print(f"error: {where}{exc}", file=sys.stderr)
        return 2
    if document.get("stack") not in (None, args.stack):
        print(
            f"error: {args.resources} is a synthesis of {document.get('stack')!r}, "
            f"not {args.stack!r}",
            file=sys.stderr,
        )
        return 2
    findings = evaluate(document, POLICIES, config)
    for finding in findings:
        print(finding.render())
    mandatory = sum(1 for f in findings if f.level == "mandatory")
    print(
        f"{args.stack}: {len(document.get('resources', []))} resources, {len(POLICIES)} policies, "
        f"{mandatory} mandatory and {len(findings) - mandatory} advisory findings"
    )
    return 1 if mandatory else 0


if __name__ == "__main__":
    if __package__ == "policies":
        sys.exit(cli(sys.argv[1:]))
    serve()
