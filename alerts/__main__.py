"""``python -m alerts render [--check]``: regenerate the SLO rule files.

``alerts/rules/slo-<name>.yml`` come from ``alerts/slos.yaml``. ``--check`` writes
nothing and exits 1 when a committed file differs from what the spec gives, or a
stale one is left over (the tests run it, so the committed files never drift).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from alerts import RULES_DIR, SLO_SPEC
from alerts.slo import load_slos, render_rule_files


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m alerts", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    render = sub.add_parser("render", help="write alerts/rules/slo-*.yml from alerts/slos.yaml")
    render.add_argument("--check", action="store_true", help="fail if a file would change")
    args = parser.parse_args(argv)

    wanted = render_rule_files(load_slos(SLO_SPEC))
    present = {path.name: path.read_text() for path in RULES_DIR.glob("slo-*.yml")}
    stale = sorted(
        name for name in present.keys() | wanted.keys() if present.get(name) != wanted.get(name)
    )
    if args.check:
        for name in stale:
            print(f"{RULES_DIR / name} is stale: run `python -m alerts render`", file=sys.stderr)
        return 1 if stale else 0
    for name in stale:
        if name in wanted:
            (RULES_DIR / name).write_text(wanted[name])
        else:
            (RULES_DIR / name).unlink()
        print(f"updated {RULES_DIR / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
