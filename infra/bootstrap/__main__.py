"""Entry point of the bootstrap project: read the config, declare the access."""

from infra.bootstrap.program import main

main()
