"""docs/deploying.md stays true: what it tells a newcomer to run exists.

Every config key it sets (`pulumi config set [--path]
KEY`) is a key of Pulumi.yaml, and every field of a `--path` is a field of
that key's model in infra/config.py. A key of another project says so with its
namespace: `enterprisehub-bootstrap:` keys are checked against
infra/bootstrap/Pulumi.yaml; a provider's own keys (`aws:region`) are the
provider's to document. Every stack output it names is exported by a stack (or
by the bootstrap project). Its `make` targets, scripts, paths and commands are
checked with every other doc's in tests/test_docs.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import typing
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from infra.components.addons import chart_values
from infra.config import StackConfig
from infra.stackfiles import project_file
from infra.synth.mocks import ProgramRun

REPO = Path(__file__).resolve().parents[2]
DOC = (REPO / "docs" / "deploying.md").read_text(encoding="utf-8")
CONFIG_SETS = [
    (path, key)
    for path, key in re.findall(
        r"pulumi config set(?: --stack \S+)?(?: --secret)?(?: --stack \S+)?"
        r"( --path)? '?((?:[\w-]+:)?[A-Za-z][\w.\[\]]*)",
        DOC,
    )
    if key != "KEY"  # the placeholder in the prose about prompting
]


def test_the_walk_through_is_long_enough_to_be_checked() -> None:
    assert len(CONFIG_SETS) > 15
    assert "make setup-deploy" in DOC


def _field(model: type[BaseModel], alias: str) -> type[BaseModel] | None:
    for name, info in model.model_fields.items():
        if alias in (info.alias, name):
            annotation = info.annotation
            inner = getattr(annotation, "__args__", (annotation,))
            for candidate in (annotation, *inner):
                if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                    return candidate
            return model  # a leaf: the path ends here
    raise AssertionError(f"{model.__name__} has no field {alias!r}")


@pytest.mark.parametrize(("path", "key"), CONFIG_SETS, ids=[k for _, k in CONFIG_SETS])
def test_every_config_key_is_in_pulumi_yaml(path: str, key: str) -> None:
    namespace, _, name = key.rpartition(":")
    if namespace == "aws":
        return
    if namespace == "enterprisehub-bootstrap":
        bootstrap = yaml.safe_load((REPO / "infra" / "bootstrap" / "Pulumi.yaml").read_text())
        assert re.split(r"[.\[]", name, maxsplit=1)[0] in bootstrap["config"]
        return
    assert namespace in ("", "enterprisehub"), f"unknown project namespace in {key}"
    key = name
    keys = set(project_file()["config"])
    top = re.split(r"[.\[]", key, maxsplit=1)[0]
    assert top in keys, f"{top} is not a config key of Pulumi.yaml"
    if not path:
        return
    _walk(re.sub(r"\[\d+\]", "", key))


#: Config paths the prose names (`cluster.autoscaling.instanceTypes`, `egress.crm`):
#: a code span of dotted camelCase words under a key of Pulumi.yaml.
CONFIG_PATHS_NAMED = sorted(
    {
        span
        for span in re.findall(r"`([a-z][A-Za-z0-9]*(?:\.[a-z][A-Za-z0-9]*)+)(?::[^`]*)?`", DOC)
        if span.split(".")[0] in project_file()["config"] and not span.endswith((".yml", ".yaml"))
    }
)


def test_the_prose_names_config_paths() -> None:
    assert "cluster.autoscaling.instanceTypes" in CONFIG_PATHS_NAMED


@pytest.mark.parametrize("key", CONFIG_PATHS_NAMED)
def test_every_config_path_named_is_a_field(key: str) -> None:
    _walk(key)


def _walk(path: str) -> None:
    """Fail unless the dotted ``path`` names fields of StackConfig, level by level."""
    model: type[BaseModel] = StackConfig
    parts = path.split(".")
    while parts:
        part = parts.pop(0)
        info = next((i for n, i in model.model_fields.items() if part in (n, i.alias)), None)
        assert info is not None, f"{model.__name__} has no field {part!r} ({path})"
        if typing.get_origin(info.annotation) is dict:
            # A map: the next part is a key (`egress.crm`, `impactAssumptions.ai_coaching`).
            key_type, value_type = typing.get_args(info.annotation)
            if parts and key_type is not str:
                assert parts.pop(0) in {k.value for k in key_type}, path
            elif parts:
                parts.pop(0)
            if isinstance(value_type, type) and issubclass(value_type, BaseModel):
                model = value_type
                continue
            assert not parts, f"{path}: {part}'s values have no fields"
            return
        following = _field(model, part)
        assert following is not None
        model = following


def _section(title: str) -> str:
    start = DOC.index(f"\n## {title}\n")
    end = DOC.find("\n## ", start + 1)
    return DOC[start : end if end != -1 else None]


#: `pulumi stack output [--stack S] NAME` anywhere, and the names the outputs section lists.
OUTPUTS_NAMED = sorted(
    set(re.findall(r"pulumi stack output(?: --stack \S+)? ([A-Za-z]\w*)", DOC))
    | set(re.findall(r"`([a-z][A-Za-z0-9]+)`", _section("Stack outputs")))
)
#: The bootstrap project's outputs (docs/deploying.md, "CI/CD").
BOOTSTRAP_OUTPUTS = set(
    re.findall(
        r'pulumi\.export\("(\w+)"', (REPO / "infra" / "bootstrap" / "program.py").read_text()
    )
)


@pytest.mark.parametrize("name", OUTPUTS_NAMED)
def test_every_stack_output_it_names_is_exported(
    name: str, stack_run: Callable[[str], ProgramRun]
) -> None:
    exported = (
        set(stack_run("production").stack_outputs)
        | set(stack_run("local").stack_outputs)
        | BOOTSTRAP_OUTPUTS
    )
    assert name in exported, f"docs/deploying.md names the stack output {name!r}"


@pytest.mark.parametrize("target", ["up", "preview", "synth", "check-manifests"])
def test_the_deploy_targets_install_no_system_packages(target: str) -> None:
    # Deploying needs the venv and the Pulumi CLI only: `make up` on macOS or a
    # non-Debian CI image must not reach apt (scripts/setup.sh and the system packages).
    # check-manifests is a deployer's step too (moving to the next Kubernetes version);
    # checkov comes in its own venv (scripts/install-checkov.sh), not from apt.
    planned = subprocess.run(
        ["make", "-n", "-B", target, "STACK=local"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    commands = planned.splitlines()
    assert "bash scripts/setup-deploy.sh" in commands
    ran = " ".join(commands)
    assert "scripts/setup.sh" not in ran
    assert "install-system-packages" not in ran
    for script in ("setup-deploy.sh", "pulumi.sh"):
        text = (REPO / "scripts" / script).read_text(encoding="utf-8")
        assert not re.search(r"\b(apt-get|apt|sudo|dpkg)\b", text), script


#: What every `make preview` and `make up` passes: the stack, and the policy pack
#: with the stack's config, as CI runs them (an operator's `make up STACK=production`
#: ran no policy at all).
STACK_AND_POLICIES = [
    "--stack",
    "dev",
    "--policy-pack",
    "policies",
    "--policy-pack-config",
    "policies/config/dev.json",
]
IN_CI = ["--non-interactive", "--color", "never"]


def _run_pulumi_sh(tmp_path: Path, *args: str, ci: str = "") -> list[str]:
    """scripts/pulumi.sh in a copy of the repository (its policy configs included)
    whose preflight passes and whose `pulumi` prints its arguments, one a line."""
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "pulumi.sh").write_text(
        (REPO / "scripts" / "pulumi.sh").read_text(encoding="utf-8"), encoding="utf-8"
    )
    shutil.copytree(REPO / "policies" / "config", tmp_path / "policies" / "config")
    bin_dir = tmp_path / "bin"
    for stub, body in (
        (tmp_path / ".venv" / "bin" / "python", "exit 0"),
        (bin_dir / "pulumi", 'printf "%s\\n" "$@"'),
    ):
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
        stub.chmod(0o755)
    result = subprocess.run(
        ["bash", str(tmp_path / "scripts" / "pulumi.sh"), *args],
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "CI": ci},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.splitlines()


@pytest.mark.parametrize(
    ("action", "ci", "expected"),
    [
        ("preview", "", ["preview", "--diff", *STACK_AND_POLICIES]),
        ("up", "", ["up", *STACK_AND_POLICIES]),
        ("preview", "true", ["preview", "--diff", *STACK_AND_POLICIES, *IN_CI]),
        ("up", "true", ["up", *STACK_AND_POLICIES, *IN_CI, "--yes"]),
    ],
)
def test_make_preview_and_up_name_the_stack_run_the_policies_and_never_prompt_in_ci(
    tmp_path: Path, action: str, ci: str, expected: list[str]
) -> None:
    assert _run_pulumi_sh(tmp_path, action, "dev", ci=ci) == expected


@pytest.mark.parametrize(
    ("stack", "config"),
    [("production", "production.json"), ("feature-x", "dev.json")],
)
def test_make_up_holds_a_stack_to_its_policy_config_else_to_devs(
    tmp_path: Path, stack: str, config: str
) -> None:
    args = _run_pulumi_sh(tmp_path, "up", stack)
    assert args[args.index("--policy-pack-config") + 1] == f"policies/config/{config}"


def test_the_kind_config_maps_the_hosts_ports_to_the_edges_node_ports() -> None:
    # The kind cluster of the walk-through must forward host 80/443 to the NodePorts
    # the local Envoy proxy listens on, or nothing reaches the edge.
    block = re.search(r"cat > kind\.yaml <<'KIND'\n(.*?)\nKIND\n", DOC, re.S)
    assert block, "the walk-through's kind.yaml heredoc"
    kind = yaml.safe_load(block[1])
    mappings = {
        m["hostPort"]: m["containerPort"]
        for node in kind["nodes"]
        for m in node.get("extraPortMappings", ())
    }
    service = chart_values("envoy-gateway", "local", stem="proxy")["provider"]["kubernetes"][
        "envoyService"
    ]
    node_ports = {p["port"]: p["nodePort"] for p in service["patch"]["value"]["spec"]["ports"]}
    assert mappings == node_ports


#: What `aws route53 list-hosted-zones-by-name --dns-name dev.example.com` may
#: answer: the list starts at that name, a private zone of the name first.
HOSTED_ZONES = {
    "HostedZones": [
        {"Id": "/hostedzone/ZPRIVATE", "Name": "dev.example.com.", "Config": {"PrivateZone": True}},
        {"Id": "/hostedzone/ZPUBLIC", "Name": "dev.example.com.", "Config": {"PrivateZone": False}},
        {"Id": "/hostedzone/ZNEXT", "Name": "dex.example.com.", "Config": {"PrivateZone": False}},
    ]
}


def test_the_zone_lookup_pasted_in_a_terminal_finds_the_public_zone(tmp_path: Path) -> None:
    # The doc's lines run as a terminal runs them (history expansion on, where a
    # `!` in double quotes is an "event not found"), with `aws` answering from
    # HOSTED_ZONES through JMESPath as the CLI does, and `pulumi` giving the domain.
    start = DOC.index("ZONE=$(pulumi config get")
    lines = DOC[start : DOC.index("cut -d/ -f3)", start) + len("cut -d/ -f3)")]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "zones.json").write_text(json.dumps(HOSTED_ZONES), encoding="utf-8")
    stubs = {
        "pulumi": "#!/bin/sh\necho dev.example.com\n",
        "aws": (
            f"#!{sys.executable}\n"
            "import json, sys, jmespath\n"
            "query = sys.argv[sys.argv.index('--query') + 1]\n"
            f"zones = json.load(open({str(tmp_path / 'zones.json')!r}))\n"
            "print(jmespath.search(query, zones))\n"
        ),
    }
    for name, body in stubs.items():
        (bin_dir / name).write_text(body, encoding="utf-8")
        (bin_dir / name).chmod(0o755)
    script = tmp_path / "lookup.sh"
    script.write_text(
        f'set -o history -o histexpand\nSTACK=dev\n{lines}\necho "$ZONE_ID"\n', encoding="utf-8"
    )
    result = subprocess.run(
        ["bash", str(script)],
        env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.stderr == ""
    assert result.stdout.strip() == "ZPUBLIC"


def test_the_up_that_closes_the_endpoint_runs_as_an_identity_the_cluster_admits() -> None:
    # Only the creator, cluster.deployRoleArn and cluster.breakGlassRoleArn get
    # access entries (infra/components/cluster.py): run on the runner with its
    # instance profile, that `up` is refused by the Kubernetes API half-way.
    start = DOC.index("- **A runner inside the VPC**")
    bullet = DOC[start : DOC.index("\n- **", start + 1)]
    closing = " ".join(bullet[bullet.index("`cluster.endpointPublicAccess false`") :].split())
    assert "creator" in closing
    assert "break-glass role" in closing
    assert "Not the runner's instance profile" in closing


def test_removing_a_protected_store_lifts_what_aws_protects_too(
    stack_run: Callable[[str], ProgramRun],
) -> None:
    # `pulumi state unprotect` lifts Pulumi's protect only. RDS refuses to delete
    # an instance with its own deletion protection on (InvalidParameterCombination),
    # and S3 and ECR a non-empty bucket or repository unless force-destroyed, so the
    # documented unprotect-then-destroy failed for all three.
    start = DOC.index("### Where data lives: protected resources")
    section = " ".join(DOC[start : DOC.index("\n## ", start)].split())
    run = stack_run("production")
    instance = run.one("aws:rds/instance:Instance").inputs
    assert instance["deletionProtection"] is True
    identifier = instance["identifier"].replace("production", "$STACK")
    assert (
        f"aws rds modify-db-instance --db-instance-identifier {identifier} "
        "--no-deletion-protection --apply-immediately"
    ) in section
    assert all(b.inputs["forceDestroy"] is False for b in run.of_type("aws:s3/bucket:Bucket"))
    assert run.one("aws:ecr/repository:Repository").inputs["forceDelete"] is False
    assert "`storage.forceDestroy` true" in section
    assert section.index("pulumi state unprotect") < section.index("--no-deletion-protection")
