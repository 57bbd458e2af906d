"""The stack configuration: every stack file loads, and every kind of bad input is refused.

Each rejection test checks that the error names the stack, the key, the bad
value and what is allowed, because that message is all a user gets before any
resource is declared.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import pulumi
import pytest

# The SDK drives its own event loop with this helper; tests use it to await one Output.
from pulumi.runtime.sync_await import _sync_await

from infra import catalog, config_checks
from infra.config import (
    OPTIONAL_SECRET_KEYS,
    REQUIRED_SECRET_KEYS,
    EgressConfig,
    StackConfig,
    StackConfigError,
    config_keys,
    load_stack_config,
)
from infra.config_checks import STANDARD_SUPPORT_VERSIONS
from infra.problems import PROJECT
from infra.stackfiles import STACKS, project_defaults, project_file, stack_config
from infra.synth import naming

DIGEST = "sha256:" + "0123456789abcdef" * 4
IMAGE = f"registry.example.com/enterprisehub@{DIGEST}"
RUNBOOKS = "https://git.example.com/enterprisehub/blob/0123abc/docs/runbooks/"
SECRETS: Mapping[str, str] = {
    "jwtSecretKey": "k" * 64,
    "anthropicApiKey": "anthropic-test-key",
    "ghlApiKey": "ghl-test-key",
}


def _load(
    stack: str,
    changes: Mapping[str, Any] | None = None,
    *,
    secrets: Mapping[str, str] = SECRETS,
    drop: tuple[str, ...] = (),
    base: str | None = None,
) -> StackConfig:
    """Load ``stack`` (from ``base``'s file if given) with ``changes`` merged one level deep."""
    config = stack_config(base or stack)
    config[f"{PROJECT}:image"] = IMAGE
    config[f"{PROJECT}:runbookBaseUrl"] = RUNBOOKS
    for key, value in (changes or {}).items():
        full = f"{PROJECT}:{key}"
        if isinstance(value, dict) and full in config:
            merged = {**json.loads(config[full]), **value}
            config[full] = json.dumps(merged)
        elif isinstance(value, dict | list):
            config[full] = json.dumps(value)
        else:
            config[full] = str(value)
    for key in drop:
        config.pop(f"{PROJECT}:{key}", None)
    qualified = {f"{PROJECT}:{k}": v for k, v in secrets.items()}
    pulumi.runtime.set_all_config({**config, **qualified}, list(qualified))
    return load_stack_config(pulumi.Config(PROJECT), stack)


def _rejected(stack: str, changes: Mapping[str, Any] | None = None, **kwargs: Any) -> str:
    with pytest.raises(StackConfigError) as caught:
        _load(stack, changes, **kwargs)
    return str(caught.value)


@pytest.mark.parametrize("stack", STACKS)
def test_every_stack_file_loads(stack: str) -> None:
    assert _load(stack).environment.value == stack


def test_every_documented_default_behaves_as_an_unset_key() -> None:
    """Pulumi hands the program Pulumi.yaml's default for a key a stack does not
    set: that default must load to the model's own default, for every key (a
    hand-kept list of keys let a new key's documented default drift)."""
    documented = project_defaults()
    keys = [key for key in config_keys() if f"{PROJECT}:{key}" in documented]
    assert len(keys) >= 15  # every key with a default in Pulumi.yaml
    for key in keys:
        if key in OPTIONAL_SECRET_KEYS:
            continue  # a secret: none of StackConfig's fields
        default = documented[f"{PROJECT}:{key}"]
        encoded = json.dumps(default) if isinstance(default, dict | list) else str(default)
        assert _outcome(drop=(key,)) == _outcome({key: encoded}), key


def _outcome(changes: Mapping[str, Any] | None = None, drop: tuple[str, ...] = ()) -> object:
    """The local stack loaded with ``changes``: its config, or the refusal's message."""
    try:
        config = _load("local", changes, drop=drop)
    except StackConfigError as error:
        return str(error)
    # The secrets are Outputs, unequal by identity: every other field.
    return config.model_copy(update={"secrets": None})


def test_feature_flags_become_the_flags_init_seed_and_match_the_services() -> None:
    from services.common.flags import FEATURES, parse_seed

    assert catalog.FEATURE_FLAGS == FEATURES
    config = _load(
        "staging",
        {
            "featureFlags": {
                "ai_coaching": {"enabled": True, "rolloutPercentage": 10},
                "property_vision": True,
            }
        },
    )
    seed = parse_seed(config.flag_seed)
    assert (seed["ai_coaching"].enabled, seed["ai_coaching"].rollout_percentage) == (True, 10)
    assert seed["property_vision"].rollout_percentage == 100
    assert seed["churn_prevention"].enabled is False
    assert "featureFlags.ai_coaching" in _rejected(
        "staging", {"featureFlags": {"ai_coaching": {"enabled": True, "rolloutPercentage": 101}}}
    )
    assert "featureFlags.vision" in _rejected("staging", {"featureFlags": {"vision": True}})


IMPACT_VISION = {"valuePerUnit": 90, "liftLow": "0.02", "lift": "0.04", "liftHigh": 0.06}


def test_a_stacks_impact_assumptions_reach_the_service_as_it_reads_them() -> None:
    from services.impact.assumptions import ASSUMPTIONS, load_assumptions

    config = _load("staging", {"impactAssumptions": {"property_vision": IMPACT_VISION}})
    priced = load_assumptions(config.pricing_settings()[catalog.IMPACT_ASSUMPTIONS_SETTING])
    vision = priced["property_vision"]
    # A decimal set with `pulumi config set --path` arrives as a string.
    assert (vision.value_per_unit, vision.lift_low, vision.lift, vision.lift_high) == (
        90,
        0.02,
        0.04,
        0.06,
    )
    assert priced["ai_coaching"] == ASSUMPTIONS["ai_coaching"]


def test_without_impact_assumptions_no_setting_is_written() -> None:
    assert _load("staging").pricing_settings() == {}
    assert _load("staging", {"impactAssumptions": {"ai_coaching": {}}}).pricing_settings() == {}


@pytest.mark.parametrize(
    ("overrides", "key", "reason"),
    [
        ({"vision": {"valuePerUnit": 1}}, "impactAssumptions.vision", "known features: realtime"),
        ({"ai_coaching": {"lifts": 1}}, "impactAssumptions.ai_coaching.lifts", "unknown key"),
        ({"ai_coaching": {"valuePerUnit": -1}}, "valuePerUnit", "greater than or equal to 0"),
        ({"ai_coaching": {"valuePerUnit": "inf"}}, "valuePerUnit", "finite number"),
        ({"ai_coaching": {"valuePerUnit": True}}, "valuePerUnit", "not a boolean"),
        ({"ai_coaching": {"valuePerUnit": "lots"}}, "valuePerUnit", "valid number"),
        ({"ai_coaching": {"lift": 0.3}}, "impactAssumptions.ai_coaching", "one range: set all"),
        (
            {"ai_coaching": {"liftLow": 0.3, "lift": 0.2, "liftHigh": 0.4}},
            "impactAssumptions.ai_coaching",
            "must hold liftLow <= lift <= liftHigh",
        ),
        (
            {"churn_prevention": {"annualValueLow": 9, "annualValueHigh": 8}},
            "impactAssumptions.churn_prevention",
            "annualValueLow <= annualValueHigh",
        ),
    ],
)
def test_bad_impact_assumptions_are_refused_at_preview_naming_the_key(
    overrides: dict[str, Any], key: str, reason: str
) -> None:
    """Each of these used to reach the dashboards, which refuse it at start: an `up`
    that waits for a Deployment that never becomes ready."""
    message = _rejected("staging", {"impactAssumptions": overrides})
    assert key in message
    assert reason in message


def test_pulumi_yaml_documents_exactly_the_keys_the_program_reads() -> None:
    documented = {key.removeprefix(f"{PROJECT}:") for key in project_file()["config"]}
    assert documented == set(config_keys())


def test_required_secrets_are_typed_secret_without_default() -> None:
    declared = project_file()["config"]
    for key in REQUIRED_SECRET_KEYS:
        assert declared[key]["secret"] is True
        assert "default" not in declared[key]


def test_a_secret_names_as_its_readers_only_workloads_that_hold_it() -> None:
    # The description is what an operator reads when deciding where a leaked key
    # was usable; churn-orchestrator was named for keys it never received.
    workloads = (
        *catalog.SERVICES.values(),
        catalog.DASHBOARDS,
        catalog.ROLLBACK_HANDLER,
        catalog.MIGRATE_JOB,
        catalog.FLAGS_INIT_JOB,
        *catalog.DAILY_JOBS,
    )
    declared = project_file()["config"]
    for key in (*REQUIRED_SECRET_KEYS, *OPTIONAL_SECRET_KEYS):
        variable = re.sub(r"(?<!^)(?=[A-Z])", "_", key).upper()
        description = " ".join(str(declared[key]["description"]).split())
        for workload in workloads:
            if re.search(rf"\b{re.escape(workload.name)}\b", description):
                assert variable in workload.secrets, (key, workload.name)


def test_production_uses_the_seed_numbers() -> None:
    config = _load("production")
    assert (config.database.allocated_storage_gb, config.database.backup_retention_days) == (
        100,
        30,
    )
    assert config.database.backup_window.startswith("02:00-")
    assert config.cache.num_nodes == 3
    plans = {plan.spec.name: plan for plan in config.service_plans}
    assert (plans["ml-services"].min_replicas, plans["ml-services"].max_replicas) == (3, 15)


def test_overrides_change_only_the_fields_they_name() -> None:
    plans = {p.spec.name: p for p in _load("local").service_plans}
    assert plans["ml-services"].cpu == "500m"
    assert plans["ml-services"].spec.port == catalog.ML_SERVICES.port


def test_error_names_stack_key_value_and_what_is_allowed() -> None:
    message = _rejected("dev", {"cache": {"numNodes": 0}})
    assert "stack 'dev'" in message
    assert "enterprisehub:cache.numNodes = 0" in message
    assert "greater than 0" in message


def test_min_replicas_above_max_is_refused() -> None:
    message = _rejected("dev", {"services": {"ml-services": {"minReplicas": 5, "maxReplicas": 2}}})
    assert "services.ml-services.minReplicas = 5: must not exceed maxReplicas (2)" in message


def test_min_above_the_seed_max_is_refused_without_a_max_override() -> None:
    message = _rejected("production", {"services": {"churn-orchestrator": {"minReplicas": 6}}})
    assert "services.churn-orchestrator.minReplicas = 6" in message


def test_unknown_service_name_is_refused() -> None:
    message = _rejected("dev", {"services": {"ml-service": {"minReplicas": 1}}})
    assert "services.ml-service" in message
    assert "known services" in message


@pytest.mark.parametrize(
    ("key", "change", "shown"),
    [
        ("database", {"allocatedStorageGb": 0}, "database.allocatedStorageGb = 0"),
        ("database", {"backupRetentionDays": 0}, "database.backupRetentionDays = 0"),
        ("cache", {"numNodes": -1}, "cache.numNodes = -1"),
        ("storage", {"noncurrentVersionExpirationDays": 0}, "noncurrentVersionExpirationDays = 0"),
        ("cache", {"snapshotRetentionDays": -3}, "cache.snapshotRetentionDays = -3"),
    ],
)
def test_zero_or_negative_sizes_counts_and_days_are_refused(
    key: str, change: dict[str, int], shown: str
) -> None:
    assert shown in _rejected("staging", {key: change})


@pytest.mark.parametrize(("allocated", "ceiling"), [(100, 100), (100, 109), (20, 21)])
def test_an_rds_storage_ceiling_under_ten_percent_above_the_storage_is_refused(
    allocated: int, ceiling: int
) -> None:
    # CreateDBInstance refuses it: "InvalidParameterCombination: The maximum
    # allocated storage must be increased by at least 10 percent".
    change = {"database": {"allocatedStorageGb": allocated, "maxAllocatedStorageGb": ceiling}}
    assert f"database.maxAllocatedStorageGb = {ceiling}" in _rejected("staging", change)


@pytest.mark.parametrize(("allocated", "ceiling"), [(100, 110), (20, 22)])
def test_an_rds_storage_ceiling_ten_percent_above_is_accepted(allocated: int, ceiling: int) -> None:
    change = {"database": {"allocatedStorageGb": allocated, "maxAllocatedStorageGb": ceiling}}
    assert _load("staging", change).database.max_allocated_storage_gb == ceiling


@pytest.mark.parametrize(
    ("allocated", "ceiling", "shown"),
    [
        (10, 100, "database.allocatedStorageGb = 10"),
        (100, 70000, "database.maxAllocatedStorageGb = 70000"),
    ],
)
def test_rds_storage_outside_what_gp3_accepts_is_refused(
    allocated: int, ceiling: int, shown: str
) -> None:
    change = {"database": {"allocatedStorageGb": allocated, "maxAllocatedStorageGb": ceiling}}
    assert shown in _rejected("dev", change)


def test_the_local_postgres_volume_needs_no_autoscaling_headroom() -> None:
    change = {"database": {"allocatedStorageGb": 10, "maxAllocatedStorageGb": 10}}
    assert _load("local", change).database.max_allocated_storage_gb == 10


@pytest.mark.parametrize(
    ("key", "window"),
    [("snapshotWindow", "03:00-03:30"), ("maintenanceWindow", "sun:05:00-sun:05:45")],
)
def test_an_elasticache_window_under_an_hour_is_refused(key: str, window: str) -> None:
    # pulumi-aws elasticache.ReplicationGroup (maintenance_window, snapshot_window):
    # "The minimum ... window is a 60 minute period"; RDS's 30 minutes do not apply.
    assert f"cache.{key} = '{window}'" in _rejected("dev", {"cache": {key: window}})


@pytest.mark.parametrize(
    ("backup", "maintenance"),
    [
        ("03:15-03:45", "sun:03:00-sun:04:00"),
        # Across midnight: Monday 00:10-00:40 lies in Sunday 23:30 - Monday 00:30.
        ("00:10-00:40", "sun:23:30-mon:00:30"),
    ],
)
def test_an_rds_backup_window_inside_the_maintenance_window_is_refused(
    backup: str, maintenance: str
) -> None:
    # RDS: PreferredBackupWindow "must not conflict with the preferred maintenance window".
    change = {"database": {"backupWindow": backup, "maintenanceWindow": maintenance}}
    assert f"database.backupWindow = '{backup}'" in _rejected("dev", change)


def test_an_rds_backup_window_next_to_the_maintenance_window_is_accepted() -> None:
    change = {
        "database": {"backupWindow": "02:30-03:00", "maintenanceWindow": "sun:03:00-sun:04:00"}
    }
    assert _load("dev", change).database.backup_window == "02:30-03:00"


@pytest.mark.parametrize("version", ["7", "7.1.0", "6.x", "8.0"])
def test_redis_versions_pulumi_aws_refuses_are_refused(version: str) -> None:
    # pulumi-aws validates Redis 6+ versions as <major>.<minor> (ElastiCache
    # resolves the patch itself): "7" alone fails the preview.
    assert f"cache.engineVersion = '{version}'" in _rejected(
        "dev", {"cache": {"engineVersion": version}}
    )


def test_a_redis_token_strategy_other_than_rotate_or_set_is_refused() -> None:
    # DELETE is only for moving to RBAC, which the services do not use.
    assert "cache.authTokenUpdateStrategy" in _rejected(
        "dev", {"cache": {"authTokenUpdateStrategy": "DELETE"}}
    )


def test_zero_node_group_size_is_refused() -> None:
    groups = [
        {"name": "general", "instanceTypes": ["m6i.large"], "minSize": 0, "desiredSize": 1,
         "maxSize": 2, "diskSizeGb": 50}
    ]  # fmt: skip
    message = _rejected("dev", {"cluster": {"nodeGroups": groups}})
    assert "cluster.nodeGroups[0].minSize = 0" in message


def test_node_group_desired_outside_bounds_is_refused() -> None:
    groups = [
        {"name": "general", "instanceTypes": ["m6i.large"], "minSize": 2, "desiredSize": 5,
         "maxSize": 3, "diskSizeGb": 50}
    ]  # fmt: skip
    assert "cluster.nodeGroups[0].desiredSize = 5" in _rejected(
        "dev", {"cluster": {"nodeGroups": groups}}
    )


def _node_group(**fields: Any) -> list[dict[str, Any]]:
    group = {"name": "general", "instanceTypes": ["m6i.large"], "minSize": 1, "desiredSize": 1,
             "maxSize": 2, "diskSizeGb": 50}  # fmt: skip
    return [{**group, **fields}]


@pytest.mark.parametrize("stack", ["dev", "staging", "production"])
def test_a_node_group_name_is_as_long_as_its_auto_name_allows(stack: str) -> None:
    # The DNS-1123 rule admitted 63 characters; pulumi-aws refused the preview
    # of any name past the stem's room, naming no config key.
    longest = config_checks.node_group_name_limit(stack)
    fits = _load(stack, {"cluster": {"nodeGroups": _node_group(name="a" * longest)}})
    logical = config_checks.node_group_logical_name(stack, fits.cluster.node_groups[0].name)
    assert naming.check("aws:eks/nodeGroup:NodeGroup", logical, {}) is None
    too_long = "a" * (longest + 1)
    message = _rejected(stack, {"cluster": {"nodeGroups": _node_group(name=too_long)}})
    assert f"cluster.nodeGroups[0].name = '{too_long}': at most {longest} characters" in message
    logical = config_checks.node_group_logical_name(stack, too_long)
    assert naming.check("aws:eks/nodeGroup:NodeGroup", logical, {}) is not None


def test_a_node_group_boots_an_ami_of_its_instances_architecture() -> None:
    # EKS accepts the group and its nodes never join: an x86 AMI on Graviton.
    assert _load("dev", {"cluster": {"nodeGroups": _node_group(instanceTypes=["m7i.large"])}})
    arm = _node_group(instanceTypes=["m7g.large", "c7gn.large"], amiType="AL2023_ARM_64_STANDARD")
    assert _load("dev", {"cluster": {"nodeGroups": arm}})
    message = _rejected(
        "dev", {"cluster": {"nodeGroups": _node_group(instanceTypes=["m7g.large"])}}
    )
    assert "cluster.nodeGroups[0].amiType = 'AL2023_x86_64_STANDARD': an x86_64 AMI" in message
    mixed = _node_group(instanceTypes=["m7g.large", "m7i.large"], amiType="AL2023_ARM_64_STANDARD")
    assert "cannot boot m7i.large (x86_64)" in _rejected("dev", {"cluster": {"nodeGroups": mixed}})


def test_a_node_group_runs_amazon_linux_2023_only() -> None:
    # The launch template encrypts AL2023's root device; Bottlerocket's data is on another.
    bottlerocket = _node_group(amiType="BOTTLEROCKET_x86_64")
    message = _rejected("dev", {"cluster": {"nodeGroups": bottlerocket}})
    assert "cluster.nodeGroups[0].amiType = 'BOTTLEROCKET_x86_64'" in message


def test_a_node_disk_larger_than_an_ebs_volume_is_refused() -> None:
    assert _load("dev", {"cluster": {"nodeGroups": _node_group(diskSizeGb=16384)}})
    message = _rejected("dev", {"cluster": {"nodeGroups": _node_group(diskSizeGb=16385)}})
    assert "cluster.nodeGroups[0].diskSizeGb = 16385: at most 16384 GiB" in message


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"database": {"poolSize": True}}, "database.poolSize"),
        ({"services": {"ml-services": {"minReplicas": True}}}, "services.ml-services.minReplicas"),
        ({"cache": {"numNodes": True}}, "cache.numNodes"),
        (
            {"featureFlags": {"ai_coaching": {"rolloutPercentage": True}}},
            # The union's arm is in the path (featureFlags.ai_coaching.FlagSeed....).
            "rolloutPercentage",
        ),
    ],
)
def test_true_or_false_where_a_number_belongs_is_refused(
    changes: Mapping[str, Any], key: str
) -> None:
    # pydantic read true as 1: one replica, a pool of one, without a word.
    message = _rejected("production", changes)
    assert f"{key} = True: not a boolean: this key takes a number or text" in message


def test_booleans_stay_accepted_where_they_belong() -> None:
    loaded = _load(
        "dev", {"rollback": {"undoDeployments": True}, "featureFlags": {"ai_coaching": True}}
    )
    assert loaded.rollback.undo_deployments is True


def test_unknown_environment_is_refused() -> None:
    message = _rejected("qa", {"environment": "qa"}, base="dev")
    assert "environment = 'qa'" in message
    assert "'production'" in message


def test_stack_named_after_an_environment_must_declare_it() -> None:
    assert "stack 'production' must declare environment 'production'" in _rejected(
        "production", {"environment": "staging"}
    )


@pytest.mark.parametrize(
    ("key", "change", "shown"),
    [
        ("database", {"deletionProtection": False}, "database.deletionProtection = False"),
        ("database", {"multiAz": False}, "database.multiAz = False"),
        ("database", {"storageEncrypted": False}, "database.storageEncrypted = False"),
        ("database", {"backupRetentionDays": 7}, "database.backupRetentionDays = 7"),
        ("database", {"backupWindow": "04:00-04:30"}, "database.backupWindow = '04:00-04:30'"),
        ("database", {"skipFinalSnapshot": True}, "database.skipFinalSnapshot = True"),
        ("cache", {"multiAz": False}, "cache.multiAz = False"),
        ("cache", {"transitEncryption": False}, "cache.transitEncryption = False"),
        ("cache", {"atRestEncryption": False}, "cache.atRestEncryption = False"),
        ("cache", {"numNodes": 2}, "cache.numNodes = 2"),
        ("cache", {"deletionProtection": False}, "cache.deletionProtection = False"),
        ("network", {"natGatewayPerAz": False}, "network.natGatewayPerAz = False"),
        ("storage", {"forceDestroy": True}, "storage.forceDestroy = True"),
    ],
)
def test_production_guarantees_cannot_be_turned_off(
    key: str, change: dict[str, Any], shown: str
) -> None:
    message = _rejected("production", {key: change})
    assert shown in message
    assert "production" in message.split(shown, 1)[1].splitlines()[0]


def test_the_same_settings_are_allowed_outside_production() -> None:
    config = _load("dev", {"database": {"deletionProtection": False, "multiAz": False}})
    assert config.database.multi_az is False


@pytest.mark.parametrize("secret", ["jwtSecretKey", "anthropicApiKey", "ghlApiKey"])
def test_missing_required_secret_is_refused_with_the_command(secret: str) -> None:
    secrets = {k: v for k, v in SECRETS.items() if k != secret}
    message = _rejected("dev", secrets=secrets)
    assert f"enterprisehub:{secret} is not set" in message
    assert f"pulumi config set --secret {secret}" in message


def test_short_signing_key_is_refused_without_showing_it() -> None:
    message = _rejected("dev", secrets={**SECRETS, "jwtSecretKey": "short-secret-value"})
    assert "jwtSecretKey = <secret, 18 characters>" in message
    assert "short-secret-value" not in message


@pytest.mark.parametrize(
    "domain",
    ["bad_host.example.com", "-lead.example.com", "example", "a..b.com", "2.5", "example.com\n"],
)
def test_malformed_domain_is_refused(domain: str) -> None:
    assert f"domain = {domain!r}" in _rejected("dev", {"domain": domain})


@pytest.mark.parametrize("host", ["api_.staging.example.com", "api.example.123"])
def test_malformed_hostname_override_is_refused(host: str) -> None:
    message = _rejected("staging", {"hostnames": {"api": host}})
    assert f"hostnames.api = '{host}'" in message


def test_latest_image_is_refused() -> None:
    message = _rejected("dev", {"image": "registry.example.com/enterprisehub:latest"})
    assert "image = 'registry.example.com/enterprisehub:latest'" in message
    assert "`latest` is refused" in message


def test_plain_tag_is_refused_with_the_fix() -> None:
    message = _rejected("dev", {"image": "registry.example.com/enterprisehub:1.4.2"})
    assert "a tag is mutable" in message
    assert "registry.example.com/enterprisehub:1.4.2@sha256:<digest>" in message


def test_tag_with_digest_is_accepted() -> None:
    image = f"localhost:5001/enterprisehub:1.4.2@{DIGEST}"
    assert _load("local", {"image": image}).image == image


def test_missing_image_is_refused() -> None:
    assert "enterprisehub:image is not set" in _rejected("dev", drop=("image",))


def test_unsupported_kubernetes_version_is_refused() -> None:
    message = _rejected("dev", {"kubernetesVersion": "1.24"})
    assert "kubernetesVersion = '1.24': supported versions: 1.32" in message


@pytest.mark.parametrize("version", ["1.30", "1.31"])
def test_versions_eks_can_no_longer_create_are_refused(version: str) -> None:
    assert f"kubernetesVersion = '{version}'" in _rejected("dev", {"kubernetesVersion": version})


@pytest.mark.parametrize("stack", ["dev", "staging", "production"])
def test_aws_stacks_are_pinned_to_a_standard_support_version(stack: str) -> None:
    config = _load(stack)
    assert config.kubernetes_version in STANDARD_SUPPORT_VERSIONS
    assert config.cluster.support_type == "STANDARD"


def test_an_extended_support_version_needs_the_extended_policy_said_aloud() -> None:
    message = _rejected("dev", {"kubernetesVersion": "1.33"})
    assert "extended support" in message
    assert "cluster.supportType" in message
    config = _load("dev", {"kubernetesVersion": "1.33", "cluster": {"supportType": "EXTENDED"}})
    assert config.kubernetes_version == "1.33"


def test_a_new_cluster_must_say_how_the_deployer_reaches_it() -> None:
    message = _rejected("dev", {"cluster": {"deployerInVpc": False}})
    assert "cluster.deployerInVpc" in message
    opened = _load(
        "dev",
        {
            "cluster": {
                "deployerInVpc": False,
                "endpointPublicAccess": True,
                "publicAccessCidrs": ["198.51.100.7/32"],
            }
        },
    )
    assert opened.cluster.public_access_cidrs == ("198.51.100.7/32",)


def test_access_entry_roles_must_be_role_arns() -> None:
    message = _rejected("dev", {"cluster": {"deployRoleArn": "arn:aws:iam::123:user/ci"}})
    assert "cluster.deployRoleArn" in message
    role = "arn:aws:iam::123456789012:role/ci-deploy"
    same = _rejected("dev", {"cluster": {"deployRoleArn": role, "breakGlassRoleArn": role}})
    assert "must differ" in same


def test_misspelled_field_is_refused() -> None:
    message = _rejected("dev", {"database": {"multiAZ": True}})
    assert "database.multiAZ" in message
    assert "unknown key" in message


@pytest.mark.parametrize(
    ("key", "value"),
    [("databse", {"multiAz": False}), ("logLvel", "DEBUG"), ("imgae", IMAGE)],
)
def test_a_misspelled_top_level_key_is_refused(key: str, value: Any) -> None:
    # Only the nested typos were refused; a top-level one was never read.
    message = _rejected("dev", {key: value})
    assert f"enterprisehub:{key} = " in message
    assert "unknown key (see Pulumi.yaml" in message


def test_keys_of_other_namespaces_and_retired_keys_are_left_alone() -> None:
    config = stack_config("dev")
    config |= {f"{PROJECT}:image": IMAGE, f"{PROJECT}:runbookBaseUrl": RUNBOOKS}
    config |= {"aws:profile": "deploy", "kubernetes:context": "kind"}
    secrets = {f"{PROJECT}:{k}": v for k, v in SECRETS.items()}
    secrets[f"{PROJECT}:encryptionKey"] = "retired-but-still-in-old-stacks"
    pulumi.runtime.set_all_config({**config, **secrets}, list(secrets))
    assert load_stack_config(pulumi.Config(PROJECT), "dev").environment.value == "dev"


@pytest.mark.parametrize("key", [*REQUIRED_SECRET_KEYS, *OPTIONAL_SECRET_KEYS])
def test_a_secret_set_without_secret_is_refused_without_showing_it(key: str) -> None:
    # `pulumi config set KEY VALUE` (no --secret) writes the value in clear
    # into the stack file; the program used it all the same.
    value = '{"v0": "' + "p" * 40 + '"}' if key == "jwtPreviousKeys" else "https://" + "p" * 40
    secrets = {name: secret for name, secret in SECRETS.items() if name != key}
    message = _rejected("dev", {key: value}, secrets=secrets)
    assert f"enterprisehub:{key} = <secret, {len(value)} characters>: is in plain text" in message
    assert f"`pulumi config set --secret {key}`" in message
    assert "p" * 40 not in message


def test_the_optional_secrets_plain_defaults_are_not_secrets_in_clear() -> None:
    _load("dev", {"slackWebhookUrl": "", "jwtPreviousKeys": "{}"})


@pytest.mark.parametrize(
    ("previous", "said"),
    [
        ({"v1": "r" * 40}, "jwtPreviousKeys = 'v1': holds the active jwtKeyId 'v1'"),
        ({"v0": "short"}, "the key of 'v0' must be at least 32 bytes"),
        ({"v 0": "r" * 40}, "each kid: 1-64 of A-Z a-z 0-9 _ . -"),
    ],
)
def test_retired_keys_the_services_would_refuse_at_start_up_are_refused(
    previous: dict[str, str], said: str
) -> None:
    # AuthSettings refuses each of these, so every pod of the update crash-looped.
    message = _rejected("dev", secrets={**SECRETS, "jwtPreviousKeys": json.dumps(previous)})
    assert said in message
    assert "short" not in message.replace("jwtPreviousKeys = <secret", "")


def test_a_retired_key_under_its_own_kid_is_accepted() -> None:
    _load("dev", secrets={**SECRETS, "jwtPreviousKeys": json.dumps({"v0": "r" * 32})})


def test_local_stack_refuses_an_eks_cluster() -> None:
    assert "cluster.mode = 'eks'" in _rejected("local", {"cluster": {"mode": "eks"}})


def test_aws_stack_refuses_the_kubeconfig_mode() -> None:
    assert "cluster.mode = 'kubeconfig'" in _rejected("dev", {"cluster": {"mode": "kubeconfig"}})


def test_existing_cluster_needs_its_name() -> None:
    message = _rejected("dev", {"cluster": {"mode": "existing-eks"}})
    assert "enterprisehub:cluster.name is not set" in message


def test_public_endpoint_open_to_the_world_is_refused() -> None:
    message = _rejected(
        "dev", {"cluster": {"endpointPublicAccess": True, "publicAccessCidrs": ["0.0.0.0/0"]}}
    )
    assert "0.0.0.0/0 is refused" in message


@pytest.mark.parametrize(
    "world", [["0.0.0.0/00"], ["0.0.0.0/1", "128.0.0.0/1"], ["10.0.0.0/8", "0.0.0.0/0"]]
)
@pytest.mark.parametrize("key", ["publicAccessCidrs", "deployerCidrs"])
def test_the_world_is_refused_however_it_is_written(key: str, world: list[str]) -> None:
    # "0.0.0.0/00" parsed as the world and passed the check of the text "0.0.0.0/0".
    cluster = {"endpointPublicAccess": True, key: world}
    if key == "deployerCidrs":
        cluster["publicAccessCidrs"] = ["198.51.100.7/32"]
    message = _rejected("dev", {"cluster": cluster})
    assert f"cluster.{key} = " in message
    assert "0.0.0.0/0 is refused, alone or pieced together" in message


def test_a_cidr_is_kept_in_its_canonical_form() -> None:
    loaded = _load("dev", {"network": {"vpcCidr": "10.40.0.0/016"}})
    assert loaded.network.vpc_cidr == "10.40.0.0/16"


def test_every_problem_is_reported_at_once() -> None:
    message = _rejected(
        "production",
        {
            "database": {"multiAz": False, "backupRetentionDays": 0},
            "domain": "not a host",
            "image": "registry.example.com/enterprisehub:latest",
        },
        secrets={k: v for k, v in SECRETS.items() if k != "ghlApiKey"},
    )
    for fragment in ("database.multiAz", "backupRetentionDays", "domain", "image", "ghlApiKey"):
        assert fragment in message
    assert "(5 problems)" in message


def test_letsencrypt_needs_a_contact_address() -> None:
    assert "acmeEmail" in _rejected("staging", {"acmeEmail": ""})


def test_stack_settings_carry_environment_and_no_flag_variables() -> None:
    settings = _load("production").stack_settings()
    assert settings["ENVIRONMENT"] == "production"
    assert not [name for name in settings if name.startswith("FEATURE_")]
    assert settings["CORS_ORIGINS"].startswith("https://intelligence.enterprisehub.ai")


def test_secrets_stay_secret_outputs() -> None:
    secrets = _load("production").secrets
    for output in (secrets.jwt_secret_key, secrets.anthropic_api_key, secrets.slack_webhook_url):
        assert isinstance(output, pulumi.Output)
        assert _sync_await(output.is_secret())


_NODE_GROUP = {
    "name": "system",
    "instanceTypes": ["m6i.large"],
    "minSize": 2,
    "desiredSize": 2,
    "maxSize": 3,
}
# Each row builds a change around one validated leaf. ``match`` with "^...$" (or a
# bare "$") accepts a value followed by a newline; every validator must refuse it.
_VALIDATED_LEAVES: list[tuple[str, Any, str]] = [
    ("domain", lambda v: {"domain": v}, "dev.enterprisehub.ai"),
    ("hostnames.api", lambda v: {"hostnames": {"api": v}}, "api.dev.enterprisehub.ai"),
    ("namespace", lambda v: {"namespace": v}, "enterprisehub"),
    ("acmeEmail", lambda v: {"acmeEmail": v}, "ops@enterprisehub.ai"),
    ("image", lambda v: {"image": v}, IMAGE),
    ("services.ml-services.cpu", lambda v: {"services": {"ml-services": {"cpu": v}}}, "500m"),
    ("services.ml-services.memory", lambda v: {"services": {"ml-services": {"memory": v}}}, "1Gi"),
    ("database.backupWindow", lambda v: {"database": {"backupWindow": v}}, "02:00-02:30"),
    (
        "database.maintenanceWindow",
        lambda v: {"database": {"maintenanceWindow": v}},
        "sun:03:00-sun:04:00",
    ),
    ("database.instanceClass", lambda v: {"database": {"instanceClass": v}}, "db.t4g.medium"),
    ("cache.nodeType", lambda v: {"cache": {"nodeType": v}}, "cache.t4g.small"),
    (
        "cluster.nodeGroups[0].name",
        lambda v: {"cluster": {"nodeGroups": [{**_NODE_GROUP, "name": v}]}},
        "system",
    ),
    (
        "cluster.nodeGroups[0].instanceTypes[0]",
        lambda v: {"cluster": {"nodeGroups": [{**_NODE_GROUP, "instanceTypes": [v]}]}},
        "m6i.large",
    ),
    ("dns.hostedZoneId", lambda v: {"dns": {"hostedZoneId": v}}, "Z0123456789ABC"),
]


@pytest.mark.parametrize(("key", "change", "value"), _VALIDATED_LEAVES)
def test_a_trailing_newline_is_refused_where_the_value_alone_is_accepted(
    key: str, change: Any, value: str
) -> None:
    _load("dev", change(value))
    message = _rejected("dev", change(value + "\n"))
    assert f"enterprisehub:{key} = " in message


def test_runbook_base_url_is_required() -> None:
    message = _rejected("production", drop=("runbookBaseUrl",))
    assert "runbookBaseUrl" in message
    assert "required" in message


@pytest.mark.parametrize(
    "url",
    [
        "http://git.example.com/docs/runbooks/",  # not https
        "https://git.example.com/docs/runbooks",  # no trailing slash: names would glue on
        "docs/runbooks/",  # repo-relative: nobody on call can open it
        "https://git.example.com/runbooks/?ref=main/",
    ],
)
def test_a_runbook_base_url_that_cannot_prefix_a_file_name_is_refused(url: str) -> None:
    assert "runbookBaseUrl" in _rejected("staging", {"runbookBaseUrl": url})


def test_runbook_base_url_is_kept() -> None:
    assert _load("dev").runbook_base_url == RUNBOOKS


def test_slack_is_configured_only_when_its_url_is_given() -> None:
    assert _load("production").secrets.slack_configured is False
    with_slack = {**SECRETS, "slackWebhookUrl": "https://hooks.slack.com/services/T0/B0/x"}
    assert _load("production", secrets=with_slack).secrets.slack_configured is True


def test_pulumi_yaml_egress_default_equals_the_model_default() -> None:
    """The CLI passes Pulumi.yaml's default, which replaces the model's whole map."""
    default = project_defaults()[f"{PROJECT}:egress"]
    model = StackConfig.model_fields["egress"].get_default(call_default_factory=True)
    documented = {
        catalog.EgressTarget(target): EgressConfig.model_validate(egress)
        for target, egress in default.items()
    }
    assert documented == model


def test_deployer_cidrs_are_cidrs_never_the_world_and_need_an_in_vpc_deployer() -> None:
    kept = _load("dev", {"cluster": {"deployerCidrs": ["10.8.0.0/22"]}})
    assert kept.cluster.deployer_cidrs == ("10.8.0.0/22",)
    assert "cluster.deployerCidrs" in _rejected("dev", {"cluster": {"deployerCidrs": ["10.8"]}})
    world = _rejected("dev", {"cluster": {"deployerCidrs": ["0.0.0.0/0"]}})
    assert "0.0.0.0/0 is refused" in world
    unused = _rejected(
        "dev",
        {
            "cluster": {
                "deployerInVpc": False,
                "deployerCidrs": ["10.8.0.0/22"],
                "endpointPublicAccess": True,
                "publicAccessCidrs": ["198.51.100.7/32"],
            }
        },
    )
    assert "only used with cluster.deployerInVpc true" in unused


def test_undoing_deployments_is_off_unless_the_stack_turns_it_on() -> None:
    assert _load("production").rollback.undo_deployments is False
    assert _load("staging", {"rollback": {"undoDeployments": True}}).rollback.undo_deployments
    assert "rollback.undoDeployments" in _rejected(
        "staging", {"rollback": {"undoDeployments": "sometimes"}}
    )
    assert "rollback.undo" in _rejected("staging", {"rollback": {"undo": True}})


@pytest.mark.parametrize("stack", STACKS)
def test_the_shipped_stacks_fit_their_postgres_connections(stack: str) -> None:
    config = _load(stack)
    limit = config_checks.database_max_connections(config)
    assert limit is not None
    reserved = 3 if config.is_local else 5
    worst = sum(n * each for _, n, each in config_checks.connection_budget(config))
    assert worst <= limit - reserved, (stack, worst, limit)


def test_every_job_with_a_database_counts_its_connections() -> None:
    # The retention prune was added with no connections counted: a Job that
    # opens the database must say how many, and the budget must count it.
    jobs = [v for v in vars(catalog).values() if isinstance(v, catalog.JobSpec)]
    with_db = [j for j in jobs if {"DATABASE_URL", "MIGRATION_DATABASE_URL"} & set(j.secrets)]
    assert with_db, "no Job opens the database?"
    assert [j.name for j in with_db if j.db_connections <= 0] == []
    (counted,) = [
        each for name, _, each in config_checks.connection_budget(_load("dev")) if name == "jobs"
    ]
    assert counted == sum(j.db_connections for j in with_db)


def test_the_seeds_pools_at_full_scale_are_refused_with_the_numbers() -> None:
    # The seed's 20 + 40 a process at every service's maximum replicas.
    message = _rejected("production", {"database": {"poolSize": 20, "maxOverflow": 40}})
    assert "enterprisehub:database.maxConnections = 1802" in message
    assert "opens 2704 Postgres connections" in message
    assert "websocket-manager 11x60, ml-services 16x60" in message
    assert "churn-orchestrator 6x78" in message
    assert "less 5 reserved for superusers = 1797" in message


def test_one_services_replicas_or_pool_can_exceed_the_budget() -> None:
    message = _rejected("dev", {"services": {"ml-services": {"maxReplicas": 30}}})
    assert "ml-services 31x10" in message
    assert "max_connections 450 (for db.t4g.medium)" in message
    # The change replaces dev's whole services map: coaching-engine keeps maxReplicas 3.
    pooled = {"coaching-engine": {"maxReplicas": 3, "dbPoolSize": 100}}
    assert "coaching-engine 4x105" in _rejected("dev", {"services": pooled})
    assert _load("dev").service_plans[2].db_settings == {
        "DB_POOL_SIZE": "5",
        "DB_MAX_OVERFLOW": "5",
    }


def test_max_connections_above_what_postgres_starts_with_is_refused() -> None:
    """RDS's parameter accepts up to 8,388,607, but PostgreSQL refuses to start with
    max_connections above MAX_BACKENDS (262,143): a reboot that never comes back."""
    message = _rejected("production", {"database": {"maxConnections": 300_000}})
    assert "database.maxConnections = 300000" in message
    assert "262143" in message


def test_the_local_postgres_default_is_postgres_own() -> None:
    message = _rejected("local", {"database": {"maxConnections": None}})
    assert "max_connections 100 (PostgreSQL's default) less 3 reserved" in message


def test_max_connections_follows_rds_formula_on_the_class_memory() -> None:
    assert config_checks.rds_instance_memory_gib("db.r6g.large") == 16
    assert config_checks.rds_instance_memory_gib("db.t4g.medium") == 4
    assert config_checks.rds_instance_memory_gib("db.m7g.2xlarge") == 32
    assert config_checks.rds_instance_memory_gib("db.x2g.large") is None
    big = _load("production", {"database": {"instanceClass": "db.r6g.16xlarge"}})
    assert config_checks.database_max_connections(big) == 5000  # LEAST(..., 5000)
    assert config_checks.database_max_connections(_load("dev")) == 450


def test_an_unknown_class_needs_max_connections() -> None:
    message = _rejected("production", {"database": {"instanceClass": "db.x2g.large"}})
    assert "enterprisehub:database.instanceClass = 'db.x2g.large'" in message
    assert "set database.maxConnections" in message
    pinned = {"database": {"instanceClass": "db.x2g.large", "maxConnections": 1500}}
    assert config_checks.database_max_connections(_load("production", pinned)) == 1500


@pytest.mark.parametrize(
    ("stack", "cluster"),
    [("dev", {"mode": "existing-eks", "name": "their-cluster"}), ("local", None)],
)
def test_a_hosted_zone_is_refused_where_no_external_dns_is_installed(
    stack: str, cluster: dict[str, str] | None
) -> None:
    # Only `eks` mode installs external-dns: elsewhere the zone was accepted and
    # ignored, and `up` succeeded without a single record.
    changes: dict[str, Any] = {"dns": {"hostedZoneId": "Z0TESTZONE42"}}
    if cluster:
        changes["cluster"] = cluster
    assert "enterprisehub:dns.hostedZoneId" in _rejected(stack, changes)
    assert _load("dev", {"dns": {"hostedZoneId": "Z0TESTZONE42"}}).dns.hosted_zone_id


@pytest.mark.parametrize("key", ["anthropicApiKey", "ghlApiKey", "slackWebhookUrl"])
@pytest.mark.parametrize("blemish", [" ", "\r", "\n\n", "\t"])
def test_a_secret_sent_in_a_header_or_url_holds_no_space_or_line_break(
    key: str, blemish: str
) -> None:
    # Accepted before; every Claude, CRM or Slack call then failed at run time.
    value = ("https://hooks.slack.invalid/T0/B0/" if key == "slackWebhookUrl" else "") + "s" * 40
    message = _rejected("dev", secrets={**SECRETS, key: value + blemish})
    assert f"enterprisehub:{key} = <secret, {len(value) + len(blemish)} characters>" in message
    assert "s" * 40 not in message
