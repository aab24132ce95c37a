"""The operating rules of the manifests, per service and per environment.

Every environment: probes, requests and limits, a PodDisruptionBudget and a
NetworkPolicy for every Deployment, non-root and read-only pods, topology
spread, termination grace periods that cover the code's drain, Prometheus
allowed to scrape every metrics port, only the gateway open to outside, and
workers kept off the cluster's ranges and the metadata address.

Production (envs/prod, overlays/gpu): at least 2 replicas and RollingUpdate
with maxUnavailable 0 for the gateway, auth, billing and jobs, every database
URL from a Secret and no SQLite anywhere, NATS with three servers and streams
with three replicas, a ServiceMonitor per service.
"""

from __future__ import annotations

import ipaddress
import re

import pytest

from tests.deploy.manifests import (
    API_SERVICES,
    ENVIRONMENTS,
    PRODUCTION,
    REPO,
    SERVICES,
    Obj,
    env,
    env_value,
    generated,
    named,
    of_kind,
    pod_labels,
    pod_spec,
    selects,
    server,
    workloads,
)

ALL = sorted(ENVIRONMENTS)
# What a worker must never reach: the cluster's usual ranges, loopback, the
# cloud metadata address (IPv4 and AWS's IPv6 one).
FORBIDDEN_FOR_WORKERS = [
    "10.0.0.1",
    "10.96.0.1",
    "172.16.0.1",
    "192.168.1.1",
    "100.64.0.1",
    "127.0.0.1",
    "169.254.169.254",
    "fd00:ec2::254",
    "fe80::1",
]
PRESTOP_S = 5


def deployments(name: str) -> dict[str, Obj]:
    return {obj["metadata"]["name"]: obj for obj in of_kind(env(name), "Deployment")}


def test_every_service_is_deployed_everywhere() -> None:
    for name in ALL:
        assert set(deployments(name)) == set(SERVICES), name


# --- pods ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_every_container_has_requests_and_limits(name: str) -> None:
    for workload in workloads(env(name)):
        spec = pod_spec(workload)
        for container in spec["containers"] + spec.get("initContainers", []):
            resources = container.get("resources", {})
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(part, {})), (
                    f"{workload['metadata']['name']}/{container['name']}: {part}"
                )


@pytest.mark.parametrize("name", ALL)
def test_every_service_has_probes(name: str) -> None:
    for service, deployment in deployments(name).items():
        container = server(deployment)
        assert "readinessProbe" in container, service
        assert "livenessProbe" in container, service
        if service != "gateway":
            # gRPC health: NOT_SERVING until started, and again while draining.
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert container[probe]["grpc"]["port"] == 50051, (service, probe)
        else:
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


@pytest.mark.parametrize("name", ALL)
def test_every_pod_is_non_root_and_read_only(name: str) -> None:
    for workload in workloads(env(name)):
        spec = pod_spec(workload)
        what = workload["metadata"]["name"]
        assert spec.get("automountServiceAccountToken") is False, what
        assert spec["securityContext"]["runAsNonRoot"] is True, what
        assert spec["securityContext"].get("runAsUser", 0) != 0, what
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", what
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, (what, container["name"])
            assert context["allowPrivilegeEscalation"] is False, (what, container["name"])
            assert context["capabilities"]["drop"] == ["ALL"], (what, container["name"])
            assert context.get("privileged") is not True


@pytest.mark.parametrize("name", ALL)
def test_every_service_has_its_service_account(name: str) -> None:
    accounts = {obj["metadata"]["name"] for obj in of_kind(env(name), "ServiceAccount")}
    for service, deployment in deployments(name).items():
        assert pod_spec(deployment)["serviceAccountName"] == service
        assert service in accounts


@pytest.mark.parametrize("name", ALL)
def test_every_deployment_spreads_across_nodes(name: str) -> None:
    for service, deployment in deployments(name).items():
        constraints = pod_spec(deployment).get("topologySpreadConstraints", [])
        by_key = {item["topologyKey"]: item for item in constraints}
        assert {"kubernetes.io/hostname", "topology.kubernetes.io/zone"} <= set(by_key), service
        for item in constraints:
            assert selects(item["labelSelector"], pod_labels(deployment)), service
        if service in API_SERVICES:
            # Hard for the API: two replicas on one node would fall together.
            assert by_key["kubernetes.io/hostname"]["whenUnsatisfiable"] == "DoNotSchedule"


@pytest.mark.parametrize("name", ALL)
def test_every_deployment_has_a_disruption_budget(name: str) -> None:
    budgets = of_kind(env(name), "PodDisruptionBudget")
    for service, deployment in deployments(name).items():
        mine = [pdb for pdb in budgets if selects(pdb["spec"]["selector"], pod_labels(deployment))]
        assert len(mine) == 1, service
        # maxUnavailable, not minAvailable: a drain is never blocked by one replica.
        assert mine[0]["spec"].get("maxUnavailable") == 1, service


@pytest.mark.parametrize("name", ALL)
def test_grace_periods_cover_the_drain(name: str) -> None:
    objects = env(name)
    for service, deployment in deployments(name).items():
        grace = pod_spec(deployment)["terminationGracePeriodSeconds"]
        lifecycle = server(deployment)["lifecycle"]["preStop"]
        assert lifecycle["sleep"]["seconds"] == PRESTOP_S
        shutdown = float(env_value(objects, deployment, "LIPSYNC_SHUTDOWN_GRACE_S") or 10)
        assert grace >= PRESTOP_S + shutdown + 10, service
        if service == "inference-service":
            # The drain finishes the jobs in hand: downloads, then a render of
            # the longest clip accepted (inference_service/settings.py defaults).
            download_s = float(env_value(objects, deployment, "LIPSYNC_DOWNLOAD_TIMEOUT_S") or 120)
            duration_s = float(env_value(objects, deployment, "LIPSYNC_MAX_DURATION_S") or 600)
            assert grace >= PRESTOP_S + download_s + duration_s + shutdown, grace


# --- replicas and rollouts ----------------------------------------------------


def replica_floor(objects: tuple[Obj, ...], deployment: Obj) -> int:
    """The fewest pods a Deployment runs: its count, or its autoscaler's minimum."""
    target = deployment["metadata"]["name"]
    for hpa in of_kind(objects, "HorizontalPodAutoscaler"):
        if hpa["spec"]["scaleTargetRef"]["name"] == target:
            assert "replicas" not in deployment["spec"], f"{target}: the HPA owns the count"
            return int(hpa["spec"].get("minReplicas", 1))
    for scaled in of_kind(objects, "ScaledObject"):
        if scaled["spec"]["scaleTargetRef"]["name"] == target:
            assert "replicas" not in deployment["spec"], f"{target}: KEDA owns the count"
            return int(scaled["spec"].get("minReplicaCount", 0))
    return int(deployment["spec"].get("replicas", 1))


@pytest.mark.parametrize("name", PRODUCTION)
def test_api_services_keep_serving_through_a_rollout(name: str) -> None:
    objects = env(name)
    for service in API_SERVICES:
        deployment = named(objects, "Deployment", service)
        assert replica_floor(objects, deployment) >= 2, service
        strategy = deployment["spec"]["strategy"]
        assert strategy["type"] == "RollingUpdate", service
        assert strategy["rollingUpdate"]["maxUnavailable"] == 0, service
        assert strategy["rollingUpdate"]["maxSurge"] >= 1, service


def test_the_gateway_scales_on_cpu() -> None:
    for name in ALL:
        hpa = named(env(name), "HorizontalPodAutoscaler", "gateway")
        assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]


def test_gpu_workers_scale_on_the_queue() -> None:
    objects = env("gpu")
    deployment = named(objects, "Deployment", "inference-service")
    spec = pod_spec(deployment)
    assert server(deployment)["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert spec["nodeSelector"]
    assert any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
    assert server(deployment)["image"].split("/")[-1].startswith("inference-service-gpu:")
    (scaled,) = of_kind(objects, "ScaledObject")
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "nats-jetstream"
    assert (trigger["metadata"]["stream"], trigger["metadata"]["consumer"]) == (
        "LIPSYNC_JOBS",
        "inference",
    )
    # One pod per job it can hold.
    concurrency = env_value(objects, deployment, "LIPSYNC_WORKER_CONCURRENCY")
    assert trigger["metadata"]["lagThreshold"] == concurrency
    assert 1 <= scaled["spec"]["minReplicaCount"] < scaled["spec"]["maxReplicaCount"]


def test_cpu_workers_run_without_gpus() -> None:
    for name in ("dev", "prod"):
        deployment = named(env(name), "Deployment", "inference-service")
        assert "nvidia.com/gpu" not in server(deployment)["resources"]["limits"]
        assert "nodeSelector" not in pod_spec(deployment)


# --- data ---------------------------------------------------------------------


def all_values(objects: tuple[Obj, ...]) -> list[str]:
    values = []
    for obj in objects:
        values += [str(v) for v in obj.get("data", {}).values()]
        values += [str(v) for v in obj.get("stringData", {}).values()]
    for workload in workloads(objects):
        for container in pod_spec(workload)["containers"]:
            values += [str(var.get("value", "")) for var in container.get("env", [])]
    return values


@pytest.mark.parametrize("name", PRODUCTION)
def test_production_has_no_sqlite_and_no_secret_values(name: str) -> None:
    objects = env(name)
    assert not [value for value in all_values(objects) if "sqlite" in value.lower()]
    # The operator creates every Secret (deploy/README.md), none comes from git.
    assert of_kind(objects, "Secret") == []
    assert not [obj for obj in objects if obj["kind"] == "PersistentVolumeClaim"]


@pytest.mark.parametrize("name", ALL)
def test_each_service_reads_its_own_database_from_a_secret(name: str) -> None:
    databases = {
        "auth-service": "LIPSYNC_AUTH_DATABASE_URL",
        "billing-service": "LIPSYNC_BILLING_DATABASE_URL",
        "job-service": "LIPSYNC_JOBS_DATABASE_URL",
    }
    secrets_used = set()
    for service, deployment in deployments(name).items():
        variables = {var["name"]: var for var in server(deployment).get("env", [])}
        if service in databases:
            ref = variables[databases[service]]["valueFrom"]["secretKeyRef"]
            secrets_used.add(ref["name"])
        assert not set(databases.values()) - {databases.get(service)} & set(variables)
    assert len(secrets_used) == len(databases), "databases must not be shared"


@pytest.mark.parametrize("name", ALL)
def test_no_results_volume_is_shared(name: str) -> None:
    """Results and uploads live in object storage; pods keep only their emptyDirs."""
    for service, deployment in deployments(name).items():
        for volume in pod_spec(deployment).get("volumes", []):
            assert "emptyDir" in volume, (service, volume["name"])
        if service in ("gateway", "job-service", "inference-service"):
            refs = [
                s["secretRef"]["name"] for s in server(deployment)["envFrom"] if "secretRef" in s
            ]
            assert refs == ["object-storage"], service


def test_dev_storage_points_at_the_in_cluster_seaweedfs() -> None:
    objects = env("dev")
    secret = named(objects, "Secret", "object-storage")["stringData"]
    assert secret["LIPSYNC_STORAGE_URL"].startswith("s3://")
    assert secret["LIPSYNC_S3_ENDPOINT_URL"] == "http://seaweedfs:8333"
    named(objects, "StatefulSet", "seaweedfs")
    for service in ("auth", "billing", "jobs"):
        url = named(objects, "Secret", f"{service}-database")["stringData"]["url"]
        assert url.startswith("postgresql://") and url.endswith(f"@postgres:5432/{service}")
        init = generated(objects, "ConfigMap", "postgres-init")["data"]["init.sql"]
        assert f"CREATE DATABASE {service} OWNER {service};" in init


@pytest.mark.parametrize("name", ALL)
def test_nats_servers_and_stream_replicas_agree(name: str) -> None:
    objects = env(name)
    servers = named(objects, "StatefulSet", "nats")["spec"]["replicas"]
    assert servers == (1 if name == "dev" else 3)
    config = generated(objects, "ConfigMap", "nats-config")["data"]["nats.conf"]
    assert len(re.findall(r"nats://nats-\d+\.nats-headless:6222", config)) == (
        0 if servers == 1 else servers
    )
    for service in ("billing-service", "job-service", "inference-service"):
        deployment = named(objects, "Deployment", service)
        assert env_value(objects, deployment, "LIPSYNC_JETSTREAM_REPLICAS") == str(servers)


# --- network ------------------------------------------------------------------


def policies_for(objects: tuple[Obj, ...], labels: dict[str, str]) -> list[Obj]:
    return [
        policy
        for policy in of_kind(objects, "NetworkPolicy")
        if selects(policy["spec"]["podSelector"], labels)
    ]


@pytest.mark.parametrize("name", ALL)
def test_default_deny_and_a_policy_for_every_pod(name: str) -> None:
    objects = env(name)
    deny = named(objects, "NetworkPolicy", "default-deny")["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    for workload in workloads(objects):
        own = [
            p
            for p in policies_for(objects, pod_labels(workload))
            if p["spec"]["podSelector"].get("matchLabels")
        ]
        assert own, f"{workload['metadata']['name']} has no NetworkPolicy of its own"


def outside_sources(rule: Obj) -> list[Obj]:
    """The peers of an ingress rule that are not pods of this namespace (none: anyone)."""
    peers = rule.get("from")
    if not peers:
        return [{"anyone": True}]
    return [peer for peer in peers if "namespaceSelector" in peer or "ipBlock" in peer]


MONITORING = {"kubernetes.io/metadata.name": "monitoring"}


@pytest.mark.parametrize("name", ALL)
def test_only_the_gateway_takes_traffic_from_outside(name: str) -> None:
    for policy in of_kind(env(name), "NetworkPolicy"):
        target = policy["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name")
        for rule in policy["spec"].get("ingress", []):
            for peer in outside_sources(rule):
                namespaces = peer.get("namespaceSelector", {}).get("matchLabels", {})
                if namespaces == MONITORING:
                    assert [p["port"] for p in rule["ports"]] == ["metrics"]
                elif namespaces == {"kubernetes.io/metadata.name": "keda"}:
                    assert (target, [p["port"] for p in rule["ports"]]) == ("nats", ["monitor"])
                else:
                    assert target == "gateway", (policy["metadata"]["name"], rule)
                    assert [p["port"] for p in rule["ports"]] == ["http"]


@pytest.mark.parametrize("name", PRODUCTION)
def test_in_production_the_api_is_reached_through_the_ingress_only(name: str) -> None:
    objects = env(name)
    policy = named(objects, "NetworkPolicy", "gateway")
    http_rules = [r for r in policy["spec"]["ingress"] if r["ports"][0]["port"] == "http"]
    assert http_rules == [
        {
            "from": [
                {"namespaceSelector": {"matchLabels": {"lipsync.io/ingress-controller": "true"}}}
            ],
            "ports": [{"port": "http", "protocol": "TCP"}],
        }
    ]
    (ingress,) = of_kind(objects, "Ingress")
    assert ingress["spec"]["tls"][0]["secretName"]
    backends = [
        path["backend"]["service"]
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    ]
    assert backends == [{"name": "gateway", "port": {"name": "http"}}]
    # The Service behind the Ingress has no metrics port.
    service = named(objects, "Service", "gateway")
    assert [port["name"] for port in service["spec"]["ports"]] == ["http"]


def reachable(policy_rules: list[Obj], address: str) -> bool:
    """Whether any egress rule lets a pod reach this address (on any port)."""
    ip = ipaddress.ip_address(address)
    for rule in policy_rules:
        peers = rule.get("to")
        if not peers:
            return True
        for peer in peers:
            block = peer.get("ipBlock")
            if block is None:
                continue  # pods of the cluster, selected by label: checked by name
            network = ipaddress.ip_network(block["cidr"])
            if ip.version != network.version or ip not in network:
                continue
            if not any(ip in ipaddress.ip_network(e) for e in block.get("except", [])):
                return True
    return False


@pytest.mark.parametrize("name", ALL)
def test_workers_reach_the_internet_but_not_the_cluster(name: str) -> None:
    objects = env(name)
    labels = pod_labels(named(objects, "Deployment", "inference-service"))
    rules = [r for p in policies_for(objects, labels) for r in p["spec"].get("egress", [])]
    for address in FORBIDDEN_FOR_WORKERS:
        assert not reachable(rules, address), address
    assert reachable(rules, "93.184.215.14")
    web = [r for r in rules if any("ipBlock" in peer for peer in r.get("to", []))]
    assert {p["port"] for r in web for p in r["ports"]} <= {80, 443}
    # Inside the cluster: NATS, billing and object storage only.
    pods = {
        value
        for rule in rules
        for peer in rule.get("to", [])
        for expr in [peer.get("podSelector", {})]
        for value in [
            *expr.get("matchLabels", {}).values(),
            *(v for e in expr.get("matchExpressions", []) for v in e["values"]),
        ]
    }
    assert pods <= {"nats", "billing-service", "seaweedfs", "kube-dns"}


def test_the_check_sees_an_open_worker() -> None:
    open_rule = [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]
    assert reachable(open_rule, "169.254.169.254")
    assert not reachable([{"to": [{"ipBlock": {"cidr": "::/0"}}]}], "10.0.0.1")


@pytest.mark.parametrize("name", ALL)
def test_each_grpc_service_takes_calls_from_its_callers_only(name: str) -> None:
    callers = {
        "auth-service": {"gateway", "job-service"},
        "billing-service": {"gateway", "job-service", "inference-service"},
        "job-service": {"gateway"},
        "inference-service": {"gateway"},
    }
    objects = env(name)
    for service, expected in callers.items():
        policy = named(objects, "NetworkPolicy", service)
        (grpc_rule,) = [r for r in policy["spec"]["ingress"] if r["ports"][0]["port"] == "grpc"]
        (peer,) = grpc_rule["from"]
        assert set(peer) == {"podSelector"}
        (expr,) = peer["podSelector"]["matchExpressions"]
        assert set(expr["values"]) == expected, service


@pytest.mark.parametrize("name", ALL)
def test_prometheus_may_scrape_every_metrics_port(name: str) -> None:
    objects = env(name)
    monitors = of_kind(objects, "ServiceMonitor")
    for workload in workloads(objects):
        ports = [
            port
            for container in pod_spec(workload)["containers"]
            for port in container.get("ports", [])
            if port["name"] == "metrics"
        ]
        if not ports:
            continue
        allowed = [
            rule
            for policy in policies_for(objects, pod_labels(workload))
            for rule in policy["spec"].get("ingress", [])
            if any(
                peer.get("namespaceSelector", {}).get("matchLabels") == MONITORING
                for peer in rule.get("from", [])
            )
        ]
        assert [p["port"] for r in allowed for p in r["ports"]] == ["metrics"]
        if name == "dev":
            continue  # no Prometheus Operator assumed there
        services = [
            svc
            for svc in of_kind(objects, "Service")
            if selects({"matchLabels": svc["spec"]["selector"]}, pod_labels(workload))
            and any(p["name"] == "metrics" for p in svc["spec"]["ports"])
        ]
        assert services, workload["metadata"]["name"]
        assert any(
            any(selects(m["spec"]["selector"], svc["metadata"]["labels"]) for svc in services)
            and [e["port"] for e in m["spec"]["endpoints"]] == ["metrics"]
            for m in monitors
        ), workload["metadata"]["name"]


def test_gateway_metrics_are_on_their_own_port() -> None:
    for name in ALL:
        objects = env(name)
        deployment = named(objects, "Deployment", "gateway")
        ports = {p["name"]: p["containerPort"] for p in server(deployment)["ports"]}
        metrics_addr = env_value(objects, deployment, "LIPSYNC_GATEWAY_METRICS_ADDR")
        http_addr = env_value(objects, deployment, "LIPSYNC_HTTP_ADDR")
        assert metrics_addr is not None and http_addr is not None
        assert metrics_addr.endswith(f":{ports['metrics']}")
        assert http_addr.endswith(f":{ports['http']}")
        assert ports["metrics"] != ports["http"]


# --- observability ------------------------------------------------------------

ALERTS = {
    "LipsyncInferenceQueueBacklog",
    "LipsyncEventConsumerLag",
    "LipsyncJobFailureRate",
    "LipsyncWebhookFailureRate",
    "LipsyncApiLatencyP99",
    "LipsyncApiErrors",
    "LipsyncServiceNotReady",
    "LipsyncServiceDown",
    "LipsyncScrapeTargetDown",
    "LipsyncNatsNotReady",
}


@pytest.mark.parametrize("name", PRODUCTION)
def test_alerts_exist_with_a_runbook_each(name: str) -> None:
    (rules,) = of_kind(env(name), "PrometheusRule")
    alerts = {rule["alert"]: rule for group in rules["spec"]["groups"] for rule in group["rules"]}
    assert set(alerts) == ALERTS
    readme = (REPO / "deploy" / "README.md").read_text()
    for alert, rule in alerts.items():
        assert rule["annotations"]["runbook"] == f"deploy/README.md#alerts: {alert}"
        assert re.search(rf"^\| `{alert}` \|", readme, re.M), f"no runbook line for {alert}"


def test_alerts_use_metrics_the_code_exports() -> None:
    (rules,) = of_kind(env("prod"), "PrometheusRule")
    code = "\n".join(
        path.read_text()
        for package in SERVICES.values()
        for path in (REPO / package).rglob("metrics.py")
    )
    for group in rules["spec"]["groups"]:
        for rule in group["rules"]:
            for metric in re.findall(r"\b(lipsync_[a-z_]+?)(?:_bucket)?\b", rule["expr"]):
                assert f'"{metric}"' in code, (rule["alert"], metric)


# --- configuration ------------------------------------------------------------

# Set by the manifests ahead of the code that reads them (none today).
PENDING: set[str] = set()


def names_the_code_reads() -> tuple[set[str], list[re.Pattern[str]]]:
    """Variable names in the services' source, and the templates of built ones
    (f"LIPSYNC_{service.upper()}_ADDR")."""
    source = "\n".join(
        path.read_text()
        for package in ("lipsync_common", *SERVICES.values())
        for path in (REPO / package).rglob("*.py")
    )
    names = set(re.findall(r"\bLIPSYNC_[A-Z0-9_]+\b", source))
    templates = [
        re.compile(rf"LIPSYNC_[A-Z]+_{suffix}$")
        for suffix in re.findall(r"LIPSYNC_\{[^}]+\}_([A-Z_]+)", source)
    ]
    return names, templates


@pytest.mark.parametrize("name", ALL)
def test_every_variable_set_is_one_the_code_reads(name: str) -> None:
    """A misspelt variable is silently ignored by the service: catch it here."""
    names, templates = names_the_code_reads()
    objects = env(name)
    for deployment in of_kind(objects, "Deployment"):
        container = server(deployment)
        variables = {var["name"] for var in container.get("env", [])}
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                variables |= set(
                    named(objects, "ConfigMap", source["configMapRef"]["name"])["data"]
                )
        for variable in variables - PENDING:
            if not variable.startswith("LIPSYNC_"):
                continue
            assert variable in names or any(t.match(variable) for t in templates), (
                deployment["metadata"]["name"],
                variable,
            )
