"""Shared fixtures for tests that run Pulumi programs under the recording mocks.

Whole-program runs are the slow part (about a second each), so each stack is
run once per session and shared: `stack_run("production")` returns the
`ProgramRun` of the real program with that stack's config and stand-in secrets,
and `synthesized("production")` the result of `infra.synth` written to a
session temporary directory. Tests must not mutate what they get.

Component tests run their own small program with `run_mocked(program, config)`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from infra.problems import PROJECT
from infra.synth import Synthesis, run_stack, synthesize
from infra.synth.inputs import stack_inputs
from infra.synth.mocks import ProgramRun, run_program


def pytest_configure(config: pytest.Config) -> None:
    """Let pulumi_aws import under `-W error`.

    Its submodules call `warnings.warn(DeprecationWarning)` at import time for
    every deprecated resource they define (e.g. ec2's EncryptionControl),
    whether or not the program uses it; nothing here can act on that. Using a
    deprecated resource is still reported, through `pulumi.log.warn`.
    """
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:pulumi_aws")


#: Test-only secret values, recognisable anywhere they might leak to.
INJECTED_SECRETS: Mapping[str, str] = {
    "jwtSecretKey": "LEAKCHECK-jwt-7f3a9c1e5b2d4f6a8c0e2b4d6f8a0c2e",
    "anthropicApiKey": "LEAKCHECK-anthropic-5e7c9a1b3d5f7e9c2a4b6d8f0e1c",
    "ghlApiKey": "LEAKCHECK-ghl-9d1f3b5e7a9c1e3f5b7d9a2c4e6f8b0d",
    "slackWebhookUrl": "https://hooks.slack.invalid/LEAKCHECK-slack-3c5e7a9b1d",
    "jwtPreviousKeys": '{"LEAKCHECK-kid": "LEAKCHECK-previous-2b4d6f8a0c2e4b6d"}',
}


@pytest.fixture(scope="session")
def injected_secrets() -> Mapping[str, str]:
    """The values `secrets_file` holds (unqualified key -> value)."""
    return INJECTED_SECRETS


@pytest.fixture(scope="session")
def secrets_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A secrets file holding `INJECTED_SECRETS` for `--secrets-file`."""
    path = tmp_path_factory.mktemp("secrets") / "secrets.yaml"
    path.write_text("".join(f"{key}: '{value}'\n" for key, value in INJECTED_SECRETS.items()))
    return path


@pytest.fixture(scope="session")
def stack_run() -> Callable[[str], ProgramRun]:
    """`stack_run(name)`: the real program run once per stack with stand-in secrets."""
    cache: dict[str, ProgramRun] = {}

    def get(stack: str) -> ProgramRun:
        if stack not in cache:
            cache[stack] = run_stack(stack_inputs(stack, environ={}))
        return cache[stack]

    return get


@pytest.fixture(scope="session")
def synthesized(
    tmp_path_factory: pytest.TempPathFactory, secrets_file: Path
) -> Callable[[str], Synthesis]:
    """`synthesized(name)`: `infra.synth` output for a stack, with `INJECTED_SECRETS`."""
    cache: dict[str, Synthesis] = {}

    def get(stack: str) -> Synthesis:
        if stack not in cache:
            out = tmp_path_factory.mktemp(f"synth-{stack}")
            cache[stack] = synthesize(stack, out, secrets_file=secrets_file)
        return cache[stack]

    return get


@pytest.fixture
def run_mocked() -> Callable[..., ProgramRun]:
    """`run_mocked(program, config={...}, secrets={...}, stack="dev")` for component tests.

    Keys may be given unqualified (`image`) or qualified (`aws:region`);
    values are strings as the CLI passes them.
    """

    def run(
        program: Callable[[], object],
        config: Mapping[str, str] | None = None,
        secrets: Mapping[str, str] | None = None,
        stack: str = "test",
    ) -> ProgramRun:
        def qualify(key: str) -> str:
            return key if ":" in key else f"{PROJECT}:{key}"

        return run_program(
            stack,
            {qualify(k): v for k, v in (config or {}).items()},
            {qualify(k): v for k, v in (secrets or {}).items()},
            program=program,
            project=PROJECT,
        )

    return run
