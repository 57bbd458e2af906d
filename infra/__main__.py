"""Pulumi entry point (``main: infra/`` in Pulumi.yaml): run the program of infra.program."""

from infra.program import main

main()
