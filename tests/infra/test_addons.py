"""ClusterAddons and charts/: pinned Helm releases, values per environment, the issuer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from infra.components.addons import (
    ACME_SERVERS,
    CHART_NAMES,
    CHARTS_DIR,
    ENVIRONMENTS,
    EXACT_VERSION,
    ChartPin,
    ClusterAddons,
    ClusterAddonsArgs,
    chart_values,
    deep_merge,
    load_pins,
    pinned_release,
)
from infra.stackfiles import STACKS, stack_config
from infra.synth.mocks import ProgramRun, Secret, run_program

RELEASE = "kubernetes:helm.sh/v3:Release"

#: Keys each chart's values must set in every environment (why they matter is in
#: charts/README.md and the values files' comments).
REQUIRED_VALUES: dict[str, list[tuple[str, ...]]] = {
    "envoy-gateway": [
        ("deployment", "replicas"),
        ("deployment", "envoyGateway", "resources", "requests"),
        ("config", "envoyGateway", "gateway", "controllerName"),
    ],
    "cert-manager": [("crds", "enabled"), ("crds", "keep"), ("config", "enableGatewayAPI")],
    "metrics-server": [("replicas",), ("resources", "requests")],
    "kube-prometheus-stack": [
        ("prometheus", "prometheusSpec", "serviceMonitorSelectorNilUsesHelmValues"),
        ("prometheus", "prometheusSpec", "retention"),
        ("grafana", "admin", "existingSecret"),
        # The dashboards' Grafana version and the sidecar label their ConfigMaps carry.
        ("grafana", "image", "tag"),
        ("grafana", "sidecar", "dashboards", "label"),
        ("grafana", "sidecar", "dashboards", "labelValue"),
        ("prometheus", "prometheusSpec", "ruleSelectorNilUsesHelmValues"),
    ],
}


def _args(**overrides: Any) -> ClusterAddonsArgs:
    values: dict[str, Any] = {
        "environment": "production",
        "app_namespaces": ["enterprisehub"],
        "issuer": "letsencrypt",
        "acme_email": "platform@enterprisehub.ai",
        "grafana_host": "grafana.enterprisehub.ai",
        "gateway_namespace": "enterprisehub",
        **overrides,
    }
    return ClusterAddonsArgs(**values)


def _run(stack: str = "production", **overrides: Any) -> ProgramRun:
    def program() -> None:
        ClusterAddons("addons", _args(**overrides))

    return run_program(stack, {}, program=program)


@pytest.fixture(scope="module")
def production() -> ProgramRun:
    return _run()


@pytest.fixture(scope="module")
def local() -> ProgramRun:
    return _run(
        "local", environment="local", issuer="selfsigned", acme_email=None, grafana_host=None
    )


def _release(run: ProgramRun, chart: str) -> dict[str, Any]:
    return run.one(RELEASE, f"addons-{chart}").inputs


def _get(values: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        values = values[key]
    return values


def test_versions_file_pins_every_chart_exactly() -> None:
    pins = load_pins()
    assert set(pins) == set(CHART_NAMES)
    for pin in pins.values():
        assert EXACT_VERSION.fullmatch(pin.version), pin
        assert pin.repository.startswith(("https://", "oci://"))


@pytest.mark.parametrize(
    "version",
    # The last three: a trailing newline ("$" accepts it) and non-ASCII digits ("\d" does).
    ["^4.14.0", "~1.18", ">=3.0.0", "4.14", "latest", "4.x", "1.9.2\n", "v1.9.2\n", "1.9.\u0662"],
)
def test_a_version_range_or_a_malformed_version_is_refused(tmp_path: Path, version: str) -> None:
    (tmp_path / "versions.yaml").write_text(
        yaml.safe_dump(
            {
                "charts": {
                    "envoy-gateway": {
                        "chart": "gateway-helm",
                        "repository": "oci://x",
                        "version": version,
                        "namespace": "envoy-gateway-system",
                    }
                }
            }
        )
    )
    with pytest.raises(ValueError, match="not an exact version"):
        load_pins(tmp_path)


@pytest.mark.parametrize("chart", CHART_NAMES)
@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_values_parse_and_carry_the_required_keys(chart: str, environment: str) -> None:
    values = chart_values(chart, environment)
    for path in REQUIRED_VALUES[chart]:
        assert _get(values, path) is not None, (chart, environment, path)


def test_every_values_file_is_a_mapping() -> None:
    files = sorted(CHARTS_DIR.glob("*/values*.yaml"))
    assert len(files) >= len(CHART_NAMES)
    for path in files:
        assert isinstance(yaml.safe_load(path.read_text("utf-8")), dict), path
        assert path.parent.name in CHART_NAMES, path


def test_every_pin_has_a_reason_in_the_readme() -> None:
    readme = (CHARTS_DIR / "README.md").read_text("utf-8")
    for pin in load_pins().values():
        assert f"| {pin.name} | {pin.version} |" in readme


def test_cert_manager_serves_the_gateway_everywhere() -> None:
    for environment in ENVIRONMENTS:
        assert chart_values("cert-manager", environment)["config"]["enableGatewayAPI"] is True


def test_proxies_sit_behind_an_nlb_on_aws_and_on_node_ports_locally() -> None:
    for environment in ENVIRONMENTS:
        service = chart_values("envoy-gateway", environment, stem="proxy")["provider"][
            "kubernetes"
        ]["envoyService"]
        if environment == "local":
            assert service["type"] == "NodePort"
            ports = service["patch"]["value"]["spec"]["ports"]
            assert {(p["port"], p["nodePort"]) for p in ports} == {(80, 30080), (443, 30443)}
            # Envoy Gateway's CRD refuses this field on anything but a LoadBalancer.
            assert "allocateLoadBalancerNodePorts" not in service
        else:
            assert service["type"] == "LoadBalancer"
            annotations = service["annotations"]
            # The AWS Load Balancer Controller's NLB (test_aws_load_balancer_controller.py).
            assert annotations["service.beta.kubernetes.io/aws-load-balancer-type"] == "external"


def test_kubelet_tls_verification_is_skipped_only_on_local() -> None:
    for environment in ENVIRONMENTS:
        args = chart_values("metrics-server", environment)["args"]
        assert ("--kubelet-insecure-tls" in args) is (environment == "local")


@pytest.mark.parametrize("environment", [e for e in ENVIRONMENTS if e != "local"])
def test_prometheus_keeps_the_slo_dashboards_30_days(environment: str) -> None:
    # The SLO dashboard's "Error budget left, 30 days" sums 30 days of series
    # (alerts/dashboards/slos.py); dev and staging kept 15, so their budget was
    # computed over half its window while the panel said 30 days.
    spec = chart_values("kube-prometheus-stack", environment)["prometheus"]["prometheusSpec"]
    assert spec["retention"] == "30d"


def test_environment_file_overrides_the_base() -> None:
    proxy = chart_values("envoy-gateway", "production", stem="proxy")["provider"]["kubernetes"]
    assert proxy["envoyDeployment"]["replicas"] == 3
    # Keys the override does not touch survive the merge.
    assert proxy["envoyService"]["externalTrafficPolicy"] == "Local"
    assert proxy["envoyDeployment"]["container"]["resources"]["requests"]["cpu"] == "200m"


def test_deep_merge_merges_maps_and_replaces_lists() -> None:
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    assert deep_merge(base, {"a": {"c": [3]}}) == {"a": {"b": 1, "c": [3]}, "d": 1}
    assert base == {"a": {"b": 1, "c": [1, 2]}, "d": 1}


def test_unknown_environment_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown environment"):
        chart_values("envoy-gateway", "qa")


@pytest.mark.parametrize("chart", CHART_NAMES)
def test_release_uses_the_pinned_chart(production: ProgramRun, chart: str) -> None:
    pin = load_pins()[chart]
    release = _release(production, chart)
    if pin.repository.startswith("oci://"):
        assert release["chart"] == f"{pin.repository}/{pin.chart}"
        assert not release.get("repositoryOpts")
    else:
        assert release["chart"] == pin.chart
        assert release["repositoryOpts"] == {"repo": pin.repository}
    assert (release["version"], release["namespace"]) == (pin.version, pin.namespace)
    assert release["createNamespace"] is False
    assert release["atomic"] is True


def test_a_pinned_release_names_an_oci_chart_in_its_reference_and_a_repository_by_url() -> None:
    def pin(repository: str) -> ChartPin:
        return ChartPin(
            name="demo",
            chart="demo-chart",
            repository=repository,
            version="1.2.3",
            namespace="demo-ns",
            pod_security="restricted",
            create_namespace=True,
        )

    def program() -> None:
        opts = pulumi.ResourceOptions()
        pinned_release("oci", pin("oci://registry.example/charts"), opts=opts, skip_crds=True)
        pinned_release("https", pin("https://charts.example"), opts=opts)

    run = run_program("production", {}, program=program)
    oci, https = run.one(RELEASE, "oci").inputs, run.one(RELEASE, "https").inputs
    assert oci["chart"] == "oci://registry.example/charts/demo-chart"
    assert not oci.get("repositoryOpts")
    assert oci["skipCrds"] is True
    assert https["chart"] == "demo-chart"
    assert https["repositoryOpts"] == {"repo": "https://charts.example"}
    assert "skipCrds" not in https
    for release in (oci, https):
        assert (release["name"], release["version"], release["namespace"]) == (
            "demo",
            "1.2.3",
            "demo-ns",
        )
        assert (release["atomic"], release["maxHistory"]) == (True, 10)


def test_release_values_are_the_merged_files(production: ProgramRun) -> None:
    values = _release(production, "metrics-server")["values"]
    assert values == chart_values("metrics-server", "production")


def test_monitoring_is_installed_before_charts_with_service_monitors(
    production: ProgramRun,
) -> None:
    prometheus = production.one(RELEASE, "addons-kube-prometheus-stack")
    assert prometheus.urn in production.one(RELEASE, "addons-metrics-server").dependencies
    # cert-manager looks for the Gateway API CRDs (from envoy-gateway) when it starts.
    gateway = production.one(RELEASE, "addons-envoy-gateway")
    assert gateway.urn in production.one(RELEASE, "addons-cert-manager").dependencies


def test_addon_namespaces_are_isolated(production: ProgramRun) -> None:
    namespaces = {
        ns.inputs["metadata"]["name"] for ns in production.of_type("kubernetes:core/v1:Namespace")
    }
    assert namespaces == {"envoy-gateway-system", "cert-manager", "monitoring"}
    denies = {
        p.inputs["metadata"]["namespace"]
        for p in production.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")
        if p.inputs["metadata"]["name"] == "default-deny-all"
    }
    assert denies == namespaces


def test_letsencrypt_issuer_uses_the_acme_server_and_email(production: ProgramRun) -> None:
    issuer = production.one("kubernetes:cert-manager.io/v1:ClusterIssuer").inputs
    assert issuer["metadata"]["name"] == "letsencrypt"
    acme = issuer["spec"]["acme"]
    assert acme["server"] == ACME_SERVERS["letsencrypt"]
    assert acme["email"] == "platform@enterprisehub.ai"
    (solver,) = acme["solvers"]
    assert solver["http01"]["gatewayHTTPRoute"]["parentRefs"] == [
        {
            "name": "enterprisehub",
            "namespace": "enterprisehub",
            "kind": "Gateway",
            "sectionName": "http",
        }
    ]


def test_issuer_waits_for_cert_manager(production: ProgramRun) -> None:
    issuer = production.one("kubernetes:cert-manager.io/v1:ClusterIssuer")
    assert production.one(RELEASE, "addons-cert-manager").urn in issuer.dependencies


def test_local_uses_a_self_signed_issuer(local: ProgramRun) -> None:
    issuer = local.one("kubernetes:cert-manager.io/v1:ClusterIssuer").inputs
    assert issuer["spec"] == {"selfSigned": {}}


def test_grafana_admin_password_is_generated_and_secret(production: ProgramRun) -> None:
    secret = production.one("kubernetes:core/v1:Secret", "addons-grafana-admin")
    data = secret.raw_inputs["stringData"]
    password = data if isinstance(data, Secret) else data["admin-password"]
    assert isinstance(password, Secret)
    values = _release(production, "kube-prometheus-stack")["values"]
    assert values["grafana"]["admin"]["existingSecret"] == secret.inputs["metadata"]["name"]


def test_grafana_is_published_by_a_route_never_an_ingress(production: ProgramRun) -> None:
    values = _release(production, "kube-prometheus-stack")["values"]
    assert values["grafana"]["ingress"] == {"enabled": False}


def test_gateway_class_names_the_environments_proxy(
    production: ProgramRun, local: ProgramRun
) -> None:
    gateway_class = production.one("kubernetes:gateway.networking.k8s.io/v1:GatewayClass").inputs
    assert (
        gateway_class["spec"]["controllerName"] == "gateway.envoyproxy.io/gatewayclass-controller"
    )
    ref = gateway_class["spec"]["parametersRef"]
    proxy = production.one("kubernetes:gateway.envoyproxy.io/v1alpha1:EnvoyProxy").inputs
    assert (ref["kind"], ref["name"], ref["namespace"]) == (
        "EnvoyProxy",
        proxy["metadata"]["name"],
        proxy["metadata"]["namespace"],
    )
    assert proxy["spec"] == chart_values("envoy-gateway", "production", stem="proxy")
    local_proxy = local.one("kubernetes:gateway.envoyproxy.io/v1alpha1:EnvoyProxy").inputs
    assert local_proxy["spec"]["provider"]["kubernetes"]["envoyService"]["type"] == "NodePort"


def test_acme_issuer_without_email_is_refused() -> None:
    with pytest.raises(ValueError, match="needs acme_email"):
        ClusterAddons("addons", _args(acme_email=None))


@pytest.mark.parametrize("section", ["charts", "awsCharts"])
def test_every_pinned_chart_supports_every_stacks_kubernetes_version(section: str) -> None:
    document = yaml.safe_load((CHARTS_DIR / "versions.yaml").read_text(encoding="utf-8"))
    for stack in STACKS:
        version = _stack_version(stack)
        for chart, entry in document[section].items():
            minimum = tuple(int(p) for p in str(entry["minKubernetes"]).split("."))
            assert version >= minimum, f"{chart} needs Kubernetes {minimum}, {stack} runs {version}"


def _stack_version(stack: str) -> tuple[int, ...]:
    value = stack_config(stack)["enterprisehub:kubernetesVersion"]
    return tuple(int(part) for part in value.split("."))
