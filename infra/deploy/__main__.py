"""`python -m infra.deploy history|rollback-plan|rollback --stack S [--to REF]`.

Exit status: 0 done (or plan allowed), 1 refused or failed (the reason is
printed), 2 bad input or a precondition that does not hold.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from infra.deploy import history as hist
from infra.deploy import rollback as rb

REPO_ROOT = Path(__file__).resolve().parents[2]


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(prog="python -m infra.deploy")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("history", "the stack's updates with their commit, result and time"),
        ("rollback-plan", "what rolling back would change, and whether it is refused"),
        ("rollback", "plan, then deploy the target commit, then check health"),
    ):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--stack", required=True)
        p.add_argument(
            "--repo", type=Path, default=REPO_ROOT, help="the git checkout (default: this one)"
        )
        if name != "history":
            p.add_argument(
                "--to", help="target commit or ref (default: the previous successful update)"
            )
            p.add_argument(
                "--markdown", type=Path, help="also write the plan/report as markdown here"
            )
    args = parser.parse_args(argv)
    repo = args.repo.resolve()
    try:
        if args.command == "history":
            print(hist.render(hist.load_history(args.stack, repo)))
            return 0
        if args.command == "rollback-plan":
            planned = rb.plan_rollback(repo, args.stack, args.to)
            print(planned.render_text(), end="")
            if args.markdown:
                args.markdown.write_text(planned.render_markdown())
            return 0 if planned.allowed else 1
        report = rb.rollback(repo, args.stack, args.to, on_output=lambda line: print(line, end=""))
        print(report.plan.render_text(), end="")
        print(f"update: {report.result}")
        for h in report.health:
            print(f"health: {h.url} {'ok' if h.ok else 'FAILED'} ({h.detail})")
        if args.markdown:
            args.markdown.write_text(report.render_markdown())
        return 0 if report.result == "succeeded" and report.healthy else 1
    except (rb.RollbackError, hist.HistoryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
