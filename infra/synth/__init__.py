"""Offline synthesis: the Pulumi program under provider-faithful mocks.

``python -m infra.synth --stack NAME --out DIR`` writes ``resources.json`` and
one Kubernetes manifest per object (see :mod:`infra.synth.cli`). The package
is self-contained tooling for developers, CI, the policy pack and the PR diff:
the Pulumi program (``infra/``) never imports it, and the services' image does
not carry it.

Modules:

* :mod:`infra.synth.mocks`: runs a program under ``pulumi.runtime.set_mocks``
  and records every registration (``run_program``).
* :mod:`infra.synth.mock_values`: the outputs a provider would compute (ids,
  ARNs, endpoints) and the data sources' answers.
* :mod:`infra.synth.kubernetes_await`: pulumi-kubernetes' ``pulumi.com/waitFor``
  annotation; a wait that the controller's status never satisfies fails the
  synthesis (``pulumi up`` would hang until its timeout).
* :mod:`infra.synth.envoy_gateway`: the status Envoy Gateway writes on a
  Gateway, from the GatewayClass and EnvoyProxy the program declared.
* :mod:`infra.synth.naming`: the physical-name rules of every AWS resource type
  the program declares (auto-naming, length limits, character sets); a name the
  provider would reject fails the synthesis.
* :mod:`infra.synth.inputs`: a stack's config as the CLI passes it, with
  stand-ins for secrets.
* :mod:`infra.synth.manifests`: the Kubernetes objects the provider would send.
"""

from infra.synth.cli import (
    GENERATOR,
    MANIFESTS_DIR,
    RESOURCES_FILE,
    SCHEMA_VERSION,
    Synthesis,
    build_document,
    main,
    resource_entry,
    run_stack,
    synthesize,
)

__all__ = [
    "GENERATOR",
    "MANIFESTS_DIR",
    "RESOURCES_FILE",
    "SCHEMA_VERSION",
    "Synthesis",
    "build_document",
    "main",
    "resource_entry",
    "run_stack",
    "synthesize",
]
