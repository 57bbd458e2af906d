"""Operator commands around the Pulumi CLI.

* `preflight`: checks before `make preview` / `make up`;
* `diff`: what changes between two offline syntheses (the pull-request comment);
* `pr_comment`: one comment per stack on a pull request, edited in place;
* `history`, `rollback` (`python -m infra.deploy history|rollback-plan|rollback`):
  a stack's updates and a planned, checked return to an earlier commit.
"""
