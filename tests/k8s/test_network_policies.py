"""Network policies: deny-all, then exactly one allow policy per workload, opening the ports it serves to the
pods that call it."""

from __future__ import annotations

from tests.k8s.conftest import SERVICE_PORTS, WORKLOAD_KINDS, Obj, named, of_kind, pod_labels, selects

# Who may call whom, by app label and port (beyond these, nothing reaches a pod).
EXPECTED_INGRESS = {
    **{name: {(caller, port) for caller in SERVICE_PORTS} for name, port in SERVICE_PORTS.items()},
    "postgres": {(caller, 5432) for caller in SERVICE_PORTS},
    "otel-collector": {(caller, port) for caller in SERVICE_PORTS for port in (4317, 4318)},
    # 8222 (monitoring) from any namespace: KEDA's JetStream scaler reads it from its own.
    "nats": {(caller, 4222) for caller in SERVICE_PORTS} | {("nats", 6222), ("*", 8222)},
    "jaeger": {("otel-collector", 4317), ("*", 16686)},
    "prometheus": {("*", 9090)},
    "grafana": {("*", 3000)},
}
METRICS_PORT = 9464  # the services' Prometheus endpoint (components/observability, dev), scraped by prometheus


def allowed_ingress(policy: Obj, objects: list[Obj]) -> set[tuple[str, int]]:
    """The (app of a pod in the namespace, port) pairs that a policy admits; a namespaceSelector counts as '*'."""
    pairs = set()
    apps = {pod_labels(w)["app"]: pod_labels(w) for w in of_kind(objects, *WORKLOAD_KINDS)}
    for rule in policy["spec"].get("ingress", []):
        ports = [p["port"] for p in rule.get("ports", [])]
        assert ports, f"{policy['metadata']['name']}: an ingress rule without ports opens every port"
        for peer in rule.get("from", []):
            assert "ipBlock" not in peer, policy["metadata"]["name"]
            if "namespaceSelector" in peer:
                pairs |= {("*", port) for port in ports}
            else:
                matched = [app for app, labels in apps.items() if selects(peer["podSelector"], labels)]
                pairs |= {(app, port) for app in matched for port in ports}
    return pairs


def test_deny_all_then_one_allow_policy_per_workload(objects: list[Obj]) -> None:
    policies = of_kind(objects, "NetworkPolicy")
    deny_all = named(objects, "NetworkPolicy", "deny-all")
    assert deny_all["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    allows = [p for p in policies if p is not deny_all]
    for workload in of_kind(objects, *WORKLOAD_KINDS):
        labels = pod_labels(workload)
        matching = [p["metadata"]["name"] for p in allows if selects(p["spec"]["podSelector"], labels)]
        assert matching == [labels["app"]], f"{workload['metadata']['name']} is selected by {matching}"
    for policy in allows:
        assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"], policy["metadata"]["name"]


def test_ingress_admits_exactly_the_expected_callers(objects: list[Obj]) -> None:
    workloads = {pod_labels(w)["app"] for w in of_kind(objects, *WORKLOAD_KINDS)}
    for app, expected in EXPECTED_INGRESS.items():
        if app in workloads:  # postgres, otel-collector, jaeger, prometheus and grafana run in dev only
            if app in SERVICE_PORTS and "prometheus" in workloads:
                expected = expected | {("prometheus", METRICS_PORT)}
            assert allowed_ingress(named(objects, "NetworkPolicy", app), objects) == expected, app


def test_services_may_resolve_names_and_reach_nats(objects: list[Obj]) -> None:
    for name in SERVICE_PORTS:
        egress = named(objects, "NetworkPolicy", name)["spec"]["egress"]
        to_nats = [
            rule
            for rule in egress
            if any(
                selects(peer.get("podSelector", {"matchLabels": {"-": "-"}}), {"app": "nats"})
                for peer in rule.get("to", [])
            )
        ]
        assert any({"port": 4222} in rule["ports"] for rule in to_nats), name
        dns = [rule for rule in egress if {"port": 53, "protocol": "UDP"} in rule.get("ports", [])]
        assert dns, f"{name} cannot resolve names"
