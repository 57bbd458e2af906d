"""Every Kubernetes policy with a compliant, a violating and a missing-property case."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.policies.policy_helpers import entry, findings

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
JOB = "kubernetes:batch/v1:Job"
CRON_JOB = "kubernetes:batch/v1:CronJob"
DIGEST = "registry.example/app@sha256:" + "a" * 64
LABELS = {"app.kubernetes.io/name": "api"}


def container(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "api",
        "image": DIGEST,
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "500m", "memory": "256Mi"},
        },
        "livenessProbe": {"httpGet": {"path": "/health", "port": "http"}},
        "readinessProbe": {"httpGet": {"path": "/health", "port": "http"}},
        "securityContext": {
            "runAsNonRoot": True,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
        "env": [
            {"name": "HOME", "value": "/tmp"},
            {"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        ],
    }
    base.update(overrides)
    return base


def deployment(
    c: dict[str, Any] | None = None, name: str = "api", namespace: str = "app"
) -> dict[str, Any]:
    return entry(
        DEPLOYMENT,
        {
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "selector": {"matchLabels": LABELS},
                "template": {
                    "metadata": {"labels": LABELS},
                    "spec": {"containers": [c or container()]},
                },
            },
        },
        name,
    )


def security(**changes: Any) -> dict[str, Any]:
    ctx = copy.deepcopy(container()["securityContext"])
    for key, value in changes.items():
        if value is None:
            ctx.pop(key, None)
        else:
            ctx[key] = value
    return container(securityContext=ctx)


def without(key: str) -> dict[str, Any]:
    c = container()
    c.pop(key)
    return c


# (policy, violating container, container with the property missing)
CASES = [
    (
        "k8s-resources-requests-limits",
        container(resources={"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1"}}),
        without("resources"),
    ),
    ("k8s-liveness-readiness-probes", container(livenessProbe=None), without("readinessProbe")),
    ("k8s-run-as-non-root", security(runAsNonRoot=False), security(runAsNonRoot=None)),
    (
        "k8s-read-only-root-filesystem",
        security(readOnlyRootFilesystem=False),
        security(readOnlyRootFilesystem=None),
    ),
    (
        "k8s-no-privilege-escalation",
        security(allowPrivilegeEscalation=True),
        security(allowPrivilegeEscalation=None),
    ),
    (
        "k8s-drop-all-capabilities",
        security(capabilities={"drop": ["NET_RAW"]}),
        security(capabilities=None),
    ),
    ("k8s-image-pinned-by-digest", container(image="registry.example/app:1.2.3"), without("image")),
    (
        "k8s-no-literal-secret-env",
        container(env=[{"name": "DATABASE_PASSWORD", "value": "hunter2"}]),
        None,
    ),
]


@pytest.mark.parametrize(("policy", "bad", "missing"), CASES)
def test_kubernetes_workload_policy_cases(
    policy: str, bad: dict[str, Any], missing: dict[str, Any] | None
) -> None:
    assert findings(policy, [deployment()]) == []
    found = findings(policy, [deployment(bad)])
    assert len(found) == 1
    assert "container api" in found[0].message
    assert "Fix:" in found[0].message
    assert "spec.template.spec.containers[0]" in found[0].message
    if missing is not None:
        assert findings(policy, [deployment(missing)]), f"{policy} accepted a missing property"


def test_literal_secret_message_never_repeats_the_value() -> None:
    found = findings(
        "k8s-no-literal-secret-env",
        [deployment(container(env=[{"name": "DATABASE_PASSWORD", "value": "hunter2"}]))],
    )
    assert "hunter2" not in found[0].message


def test_pod_level_non_root_counts_and_init_containers_are_checked() -> None:
    c = security(runAsNonRoot=None)
    d = deployment(c)
    d["inputs"]["spec"]["template"]["spec"]["securityContext"] = {"runAsNonRoot": True}
    assert findings("k8s-run-as-non-root", [d]) == []
    d["inputs"]["spec"]["template"]["spec"]["initContainers"] = [
        container(name="init", image="busybox:1")
    ]
    found = findings("k8s-image-pinned-by-digest", [d])
    assert len(found) == 1
    assert "initContainers[0]" in found[0].message


def test_jobs_need_no_probes_but_cron_jobs_are_hardened() -> None:
    job = entry(JOB, {"spec": {"template": {"spec": {"containers": [without("livenessProbe")]}}}})
    assert findings("k8s-liveness-readiness-probes", [job]) == []
    cron = entry(
        CRON_JOB,
        {
            "spec": {
                "jobTemplate": {
                    "spec": {
                        "template": {
                            "spec": {"containers": [security(readOnlyRootFilesystem=False)]}
                        }
                    }
                }
            }
        },
    )
    found = findings("k8s-read-only-root-filesystem", [cron])
    assert len(found) == 1
    assert "jobTemplate" in found[0].message


def hpa(
    target: str = "api", min_replicas: int | None = 2, namespace: str = "app"
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "scaleTargetRef": {"kind": "Deployment", "apiVersion": "apps/v1", "name": target},
        "maxReplicas": 5,
    }
    if min_replicas is not None:
        spec["minReplicas"] = min_replicas
    return entry(
        "kubernetes:autoscaling/v2:HorizontalPodAutoscaler",
        {"metadata": {"name": target, "namespace": namespace}, "spec": spec},
        f"hpa-{target}",
    )


def pdb(labels: dict[str, str] | None = None, namespace: str = "app") -> dict[str, Any]:
    return entry(
        "kubernetes:policy/v1:PodDisruptionBudget",
        {
            "metadata": {"name": "api", "namespace": namespace},
            "spec": {"selector": {"matchLabels": labels or LABELS}, "maxUnavailable": 1},
        },
        "pdb",
    )


def test_hpa_and_pdb_per_deployment() -> None:
    policy = "k8s-deployment-hpa-and-pdb"
    assert findings(policy, [deployment(), hpa(), pdb()]) == []
    # Violating: production needs two replicas at least; dev accepts one.
    low = findings(policy, [deployment(), hpa(min_replicas=1), pdb()])
    assert len(low) == 1
    assert "minReplicas" in low[0].message
    assert findings(policy, [deployment(), hpa(min_replicas=1), pdb()], "dev") == []
    # Missing minReplicas means 1.
    assert findings(policy, [deployment(), hpa(min_replicas=None), pdb()])
    # Missing objects, or objects for another Deployment / namespace.
    missing = findings(
        policy, [deployment(), hpa(target="other"), pdb({"app.kubernetes.io/name": "other"})]
    )
    assert sorted(m.message.split("`")[1] for m in missing) == [
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    ]
    assert len(findings(policy, [deployment(), hpa(namespace="x"), pdb(namespace="x")])) == 2


def netpol(namespace: str, spec: dict[str, Any], name: str = "deny") -> dict[str, Any]:
    return entry(
        "kubernetes:networking.k8s.io/v1:NetworkPolicy",
        {"metadata": {"name": name, "namespace": namespace}, "spec": spec},
        f"{namespace}-{name}",
    )


DENY = {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def test_default_deny_per_namespace() -> None:
    policy = "k8s-namespace-default-deny"
    ns = entry("kubernetes:core/v1:Namespace", {"metadata": {"name": "app"}}, "ns")
    assert findings(policy, [ns, deployment(), netpol("app", DENY)]) == []
    # Violating: the only policy in the namespace allows traffic, or denies only ingress.
    allow = {**DENY, "ingress": [{"from": [{"podSelector": {}}]}]}
    assert findings(policy, [ns, deployment(), netpol("app", allow)])
    assert findings(
        policy, [ns, deployment(), netpol("app", {"podSelector": {}, "policyTypes": ["Ingress"]})]
    )
    # Missing: no policy at all, for a declared namespace and for a workload's own namespace.
    found = findings(policy, [ns, deployment(namespace="other"), netpol("app", DENY)])
    assert len(found) == 1
    assert "namespace other" in found[0].message
    selector_missing = {"policyTypes": ["Ingress", "Egress"]}
    assert findings(policy, [ns, netpol("app", selector_missing)])


STORAGE_CLASS = "kubernetes:storage.k8s.io/v1:StorageClass"
NODE_CLASS = "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass"
GOOD_NODE_CLASS = {
    "spec": {
        "metadataOptions": {"httpTokens": "required", "httpPutResponseHopLimit": 1},
        "blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {"encrypted": True}}],
    }
}


def test_storage_class_encrypted_three_cases() -> None:
    good = {"provisioner": "ebs.csi.aws.com", "parameters": {"type": "gp3", "encrypted": "true"}}
    assert findings("k8s-storage-class-encrypted", [entry(STORAGE_CLASS, good)]) == []
    bad = copy.deepcopy(good)
    bad["parameters"]["encrypted"] = "false"
    (found,) = findings("k8s-storage-class-encrypted", [entry(STORAGE_CLASS, bad)])
    assert "parameters.encrypted" in found.message
    assert findings("k8s-storage-class-encrypted", [entry(STORAGE_CLASS, {"parameters": {}})])


def test_karpenter_nodes_hardened_three_cases() -> None:
    assert findings("karpenter-nodes-hardened", [entry(NODE_CLASS, GOOD_NODE_CLASS)]) == []
    imds_v1 = copy.deepcopy(GOOD_NODE_CLASS)
    imds_v1["spec"]["metadataOptions"]["httpTokens"] = "optional"
    (found,) = findings("karpenter-nodes-hardened", [entry(NODE_CLASS, imds_v1)])
    assert "httpTokens" in found.message
    plain = copy.deepcopy(GOOD_NODE_CLASS)
    plain["spec"]["blockDeviceMappings"][0]["ebs"]["encrypted"] = False
    assert findings("karpenter-nodes-hardened", [entry(NODE_CLASS, plain)])
    missing = findings("karpenter-nodes-hardened", [entry(NODE_CLASS, {"spec": {}})])
    assert len(missing) == 2


CONFIG_MAP = "kubernetes:core/v1:ConfigMap"


def test_a_credential_among_a_services_settings_is_refused() -> None:
    """The services read their settings through envFrom of a ConfigMap, never
    env: a password there was plain text that k8s-no-literal-secret-env never saw."""
    settings = {"LOG_LEVEL": "INFO", "JWT_KEY_ID": "v2", "ML_MODEL_URI": "s3://models/lead/"}
    assert findings("k8s-no-secret-in-configmap", [entry(CONFIG_MAP, {"data": settings})]) == []
    assert findings("k8s-no-secret-in-configmap", [entry(CONFIG_MAP, {"metadata": {}})]) == []
    leaked = {
        **settings,
        "ANTHROPIC_API_KEY": "sk-ant-xyz",
        "DATABASE_URL": "postgresql://app:hunter2@db:5432/eh",
    }
    found = findings("k8s-no-secret-in-configmap", [entry(CONFIG_MAP, {"data": leaked})])
    assert [f.message.split("`")[1] for f in found] == [
        "data.ANTHROPIC_API_KEY",
        "data.DATABASE_URL",
    ]
    assert all("Fix:" in f.message and "hunter2" not in f.message for f in found)
    assert all("sk-ant-xyz" not in f.message for f in found)
