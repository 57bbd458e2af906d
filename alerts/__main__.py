"""``python -m alerts render [--check]`` and ``python -m alerts dashboards --out DIR``.

``render`` regenerates the SLO rule files; ``dashboards`` writes the Grafana
dashboards' JSON into DIR (nothing rendered is committed).

``alerts/rules/slo-<name>.yml`` come from ``alerts/slos.yaml``. ``--check`` writes
nothing and exits 1 when a committed file differs from what the spec gives, or a
stale one is left over (the tests run it, so the committed files never drift).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from alerts import RULES_DIR, SLO_SPEC
from alerts.dashboards import render as render_dashboards
from alerts.slo import load_slos, render_rule_files


def _write_dashboards(out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    for name, text in render_dashboards().items():
        (out / name).write_text(text)
        print(f"wrote {out / name}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m alerts", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    render = sub.add_parser("render", help="write alerts/rules/slo-*.yml from alerts/slos.yaml")
    render.add_argument("--check", action="store_true", help="fail if a file would change")
    dashboards = sub.add_parser("dashboards", help="write the Grafana dashboards' JSON")
    dashboards.add_argument("--out", type=Path, required=True, help="output directory")
    args = parser.parse_args(argv)
    if args.command == "dashboards":
        return _write_dashboards(args.out)

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
