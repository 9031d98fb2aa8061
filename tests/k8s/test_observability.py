"""The dev overlay's observability (components/observability): Grafana is provisioned with the data sources the
dashboard names and the dashboard itself, and Prometheus scrapes every service's metrics port. That every panel
has data after a real backup: tests/e2e/test_observability.py."""

from __future__ import annotations

import json

import yaml

from tests.k8s.conftest import K8S, SERVICE_PORTS, Obj, config_data, named, of_kind, pod_spec, render

DASHBOARD = K8S / "components" / "observability" / "dashboards" / "sfvault.json"


def generated(objects: list[Obj], name: str) -> dict[str, str]:
    """The data of a generated ConfigMap (its name carries a hash suffix)."""
    (found,) = [o for o in of_kind(objects, "ConfigMap") if o["metadata"]["name"].rsplit("-", 1)[0] == name]
    return dict(found["data"])


def test_grafana_has_the_dashboard_and_the_data_sources_it_names() -> None:
    objects = render("dev")
    provisioning = generated(objects, "grafana-provisioning")
    sources = {d["uid"]: d for d in yaml.safe_load(provisioning["datasources.yaml"])["datasources"]}
    assert sources["prometheus"]["url"] == "http://prometheus:9090" and sources["jaeger"]["type"] == "jaeger"
    assert named(objects, "Service", "jaeger") and named(objects, "Service", "prometheus")
    dashboard = json.loads(generated(objects, "grafana-dashboards")["sfvault.json"])
    assert dashboard == json.loads(DASHBOARD.read_text())
    named_uids = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]}
    assert named_uids == set(sources)
    (provider,) = yaml.safe_load(provisioning["dashboards.yaml"])["providers"]
    spec = pod_spec(named(objects, "Deployment", "grafana"))
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in spec["containers"][0]["volumeMounts"]}
    assert mounts[provider["options"]["path"]]["configMap"]["name"].startswith("grafana-dashboards-")
    items = {i["key"]: i["path"] for i in mounts["/etc/grafana/provisioning"]["configMap"]["items"]}
    assert items == {key: f"{key.split('.')[0]}/{key}" for key in ("datasources.yaml", "dashboards.yaml")}


def test_prometheus_scrapes_every_pod_of_each_service_on_its_metrics_port() -> None:
    objects = render("dev")
    port = int(config_data(objects)["SFVAULT_METRICS_PORT"])
    config = yaml.safe_load(generated(objects, "prometheus-config")["prometheus.yml"])
    (sd,) = config["scrape_configs"][0]["dns_sd_configs"]
    assert sd["port"] == port and sd["type"] == "A"
    for name in SERVICE_PORTS:
        service = named(objects, "Service", f"{name}-metrics")
        assert service["spec"]["clusterIP"] == "None"  # DNS answers every pod, not one address
        assert service["spec"]["selector"] == {"app": name}
        assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(port, port)]
    assert sorted(sd["names"]) == sorted(f"{name}-metrics" for name in SERVICE_PORTS)
