"""The recording mocks themselves, on small programs written for the purpose."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pulumi_random as random
import pytest

from infra.synth.mock_values import AUTONAMED_ANNOTATION, UnmockedCallError, render_policy_document
from infra.synth.mocks import (
    SECRET_MASK,
    ProgramRun,
    Secret,
    mask_secrets,
    normalize_numbers,
    run_outside_program,
)


class _Box(pulumi.ComponentResource):
    """A component with one child, to check parents and child URNs."""

    def __init__(self, name: str) -> None:
        super().__init__("enterprisehub:test:Box", name)
        self.bucket = aws.s3.Bucket(f"{name}-bucket", opts=pulumi.ResourceOptions(parent=self))
        self.register_outputs({"bucket": self.bucket.bucket})


def _program() -> None:
    token = pulumi.Config().require_secret("token")
    vpc = aws.ec2.Vpc("vpc", cidr_block="10.0.0.0/16")
    aws.ec2.Subnet("subnet", vpc_id=vpc.id, cidr_block="10.0.1.0/24")
    _Box("box")
    password = random.RandomPassword("password", length=20)
    provider = k8s.Provider("cluster", kubeconfig="{}")
    on_cluster = pulumi.ResourceOptions(provider=provider)
    namespace = k8s.core.v1.Namespace("apps", opts=on_cluster)
    secret = k8s.core.v1.Secret(
        "creds",
        metadata={"namespace": namespace.metadata.name},
        string_data={"PASSWORD": password.result, "TOKEN": token},
        opts=on_cluster,
    )
    k8s.apps.v1.Deployment(
        "web",
        metadata={"namespace": namespace.metadata.name, "name": "web"},
        spec={
            "replicas": 3,
            "selector": {"match_labels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {"name": "web", "image": "web:1", "ports": [{"container_port": 8001}]}
                    ]
                },
            },
        },
        opts=pulumi.ResourceOptions(provider=provider, depends_on=[secret]),
    )
    pulumi.export("password", password.result)
    pulumi.export("vpc", vpc.id)


@pytest.fixture
def run(run_mocked: Callable[..., ProgramRun]) -> ProgramRun:
    return run_mocked(_program, secrets={"token": "s3cr3t-token-value"}, stack="dev")


def test_every_resource_is_recorded_with_its_type_and_name(run: ProgramRun) -> None:
    assert {(r.type, r.name) for r in run} >= {
        ("aws:ec2/vpc:Vpc", "vpc"),
        ("enterprisehub:test:Box", "box"),
        ("aws:s3/bucket:Bucket", "box-bucket"),
        ("kubernetes:apps/v1:Deployment", "web"),
    }


def test_urns_match_the_engine_and_leave_out_the_root_stack(run: ProgramRun) -> None:
    assert run.one("aws:ec2/vpc:Vpc").urn == "urn:pulumi:dev::enterprisehub::aws:ec2/vpc:Vpc::vpc"
    assert (
        run.one("aws:s3/bucket:Bucket").urn
        == "urn:pulumi:dev::enterprisehub::enterprisehub:test:Box$aws:s3/bucket:Bucket::box-bucket"
    )


def test_parent_is_the_component_or_the_root_stack(run: ProgramRun) -> None:
    box = run.one("enterprisehub:test:Box")
    assert run.one("aws:s3/bucket:Bucket").parent == box.urn
    assert box.parent == "urn:pulumi:dev::enterprisehub::pulumi:pulumi:Stack::enterprisehub-dev"


def test_implicit_and_explicit_dependencies_are_recorded(run: ProgramRun) -> None:
    vpc = run.one("aws:ec2/vpc:Vpc")
    subnet = run.one("aws:ec2/subnet:Subnet")
    secret = run.one("kubernetes:core/v1:Secret")
    assert subnet.dependencies == (vpc.urn,)
    assert subnet.property_dependencies["vpcId"] == (vpc.urn,)
    assert secret.urn in run.one("kubernetes:apps/v1:Deployment").dependencies


def test_explicit_provider_is_recorded_by_urn_and_default_as_none(run: ProgramRun) -> None:
    provider = run.one("pulumi:providers:kubernetes")
    assert run.one("kubernetes:apps/v1:Deployment").provider == provider.urn
    assert run.one("aws:ec2/vpc:Vpc").provider is None


def test_computed_outputs_flow_into_dependent_inputs(run: ProgramRun) -> None:
    vpc = run.one("aws:ec2/vpc:Vpc")
    assert vpc.id.startswith("vpc-")
    assert run.one("aws:ec2/subnet:Subnet").inputs["vpcId"] == vpc.id
    assert run.one("aws:s3/bucket:Bucket").outputs["arn"].startswith("arn:aws:s3:::box-bucket-")


def test_kubernetes_objects_without_a_name_get_a_stable_generated_one(
    run: ProgramRun, run_mocked: Callable[..., ProgramRun]
) -> None:
    metadata = run.one("kubernetes:core/v1:Namespace").outputs["metadata"]
    assert metadata["name"].startswith("apps-")
    assert metadata["annotations"][AUTONAMED_ANNOTATION] == "true"
    again = run_mocked(_program, secrets={"token": "other"}, stack="dev")
    assert again.one("kubernetes:core/v1:Namespace").outputs["metadata"]["name"] == metadata["name"]


def test_inputs_arrive_in_kubernetes_casing(run: ProgramRun) -> None:
    spec = run.one("kubernetes:apps/v1:Deployment").inputs["spec"]
    assert spec["selector"] == {"matchLabels": {"app": "web"}}


def test_whole_number_inputs_come_back_as_ints(run: ProgramRun) -> None:
    deployment = run.one("kubernetes:apps/v1:Deployment")
    assert deployment.raw_inputs["spec"]["replicas"] == 3.0
    assert type(deployment.inputs["spec"]["replicas"]) is int


def test_secret_inputs_are_marked_per_value(run: ProgramRun) -> None:
    string_data = run.one("kubernetes:core/v1:Secret").raw_inputs["stringData"]
    masked = mask_secrets(string_data)
    assert masked == {"PASSWORD": SECRET_MASK, "TOKEN": SECRET_MASK}
    assert "s3cr3t-token-value" not in json.dumps(masked)


def test_additional_secret_outputs_are_secret(run: ProgramRun) -> None:
    password = run.one("random:index/randomPassword:RandomPassword")
    assert isinstance(password.raw_outputs["result"], Secret)
    assert len(password.outputs["result"]) == 20


def test_stack_outputs_keep_their_secretness(run: ProgramRun) -> None:
    assert isinstance(run.stack_outputs["password"], Secret)
    assert run.plain_stack_outputs()["vpc"] == run.one("aws:ec2/vpc:Vpc").id


def test_component_outputs_are_recorded(run: ProgramRun) -> None:
    bucket = run.one("aws:s3/bucket:Bucket").outputs["bucket"]
    assert run.one("enterprisehub:test:Box").outputs == {"bucket": bucket}


def test_data_sources_are_answered_and_recorded(run_mocked: Callable[..., ProgramRun]) -> None:
    def program() -> None:
        zones = aws.get_availability_zones()
        aws.ec2.Subnet(
            "a", vpc_id="vpc-1", cidr_block="10.0.0.0/24", availability_zone=zones.names[0]
        )

    run = run_mocked(program, config={"aws:region": "eu-west-1"})
    assert run.one("aws:ec2/subnet:Subnet").inputs["availabilityZone"] == "eu-west-1a"
    assert [c.token for c in run.calls] == ["aws:index/getAvailabilityZones:getAvailabilityZones"]


def test_unknown_data_source_fails_naming_the_token(run_mocked: Callable[..., ProgramRun]) -> None:
    def program() -> None:
        aws.ec2.get_vpc(default=True)  # not answered by the mocks on purpose

    with pytest.raises(UnmockedCallError, match="aws:ec2/getVpc:getVpc"):
        run_mocked(program)


def test_policy_document_is_rendered_as_iam_json() -> None:
    rendered = render_policy_document(
        {
            "statements": [
                {
                    "sid": "Assume",
                    "actions": ["sts:AssumeRoleWithWebIdentity"],
                    "principals": [{"type": "Federated", "identifiers": ["arn:aws:iam::1:oidc"]}],
                    "conditions": [
                        {"test": "StringEquals", "variable": "x:sub", "values": ["system:sa"]}
                    ],
                }
            ]
        }
    )
    assert json.loads(rendered["json"]) == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "Assume",
                "Effect": "Allow",
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Principal": {"Federated": "arn:aws:iam::1:oidc"},
                "Condition": {"StringEquals": {"x:sub": "system:sa"}},
            }
        ],
    }


def test_normalize_numbers_leaves_fractions_and_bools_alone() -> None:
    assert normalize_numbers({"a": 2.0, "b": 0.5, "c": True, "d": [1.0]}) == {
        "a": 2,
        "b": 0.5,
        "c": True,
        "d": [1],
    }


def test_eks_get_cluster_answers_in_the_data_source_shape(
    run_mocked: Callable[..., ProgramRun],
) -> None:
    def program() -> None:
        cluster = aws.eks.get_cluster(name="shared")
        aws.ec2.SecurityGroup(
            "from-cluster",
            vpc_id=cluster.vpc_config.vpc_id,
            description=cluster.certificate_authorities[0].data,
        )

    group = run_mocked(program).one("aws:ec2/securityGroup:SecurityGroup")
    assert group.inputs["vpcId"].startswith("vpc-")
    assert group.inputs["description"]


def test_tasks_left_on_a_worker_loop_are_finished_when_the_run_ends() -> None:
    # What the SDK's executor threads leave behind: a task on their own loop that
    # never ran. Collected later, it was reported as "never awaited" and failed
    # whichever test was running then.
    from infra.synth import mocks

    async def never_started() -> None:
        raise AssertionError("not expected to run to its body")

    left: list[asyncio.Task[None]] = []

    def worker() -> None:
        mocks._worker_loops.ensure()
        left.append(asyncio.get_event_loop_policy().get_event_loop().create_task(never_started()))

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    mocks._worker_loops.close_all()
    (task,) = left
    assert task.cancelled()


def _main_loop_tasks() -> set[asyncio.Task[Any]]:
    return asyncio.all_tasks(asyncio.get_event_loop_policy().get_event_loop())


def test_outputs_made_outside_a_run_leave_nothing_on_the_main_loop() -> None:
    # Config loaded at collection time (to build parametrize cases) made secret
    # Outputs whose tasks stayed pending on the main loop, were collected much
    # later and failed an unrelated test as "never awaited".
    before = _main_loop_tasks()
    outputs = run_outside_program(lambda: [pulumi.Output.secret(str(n)) for n in range(3)])
    assert len(outputs) == 3
    assert _main_loop_tasks() == before


def test_outside_a_run_the_function_s_exception_reaches_the_caller() -> None:
    def fails() -> None:
        raise ValueError("bad config")

    with pytest.raises(ValueError, match="bad config"):
        run_outside_program(fails)
