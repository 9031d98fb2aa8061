"""What the rendered workloads must hold: hardened pods, native gRPC probes, configuration from the ConfigMap
and secrets from Secrets, one session replica, jobrunner autoscaling, stream replicas, disruption budgets."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from services.platform.bus import BusConfig
from tests.k8s.conftest import (
    NAMESPACE,
    SERVICE_PORTS,
    WORKLOAD_KINDS,
    Obj,
    config_data,
    containers,
    named,
    of_kind,
    pod_labels,
    pod_spec,
    selects,
)

# Secrets that the operator creates in prod (k8s/README.md); every other reference must resolve in the render.
EXTERNAL_SECRETS = {
    "dev": set(),
    "prod": {
        "sfvault-database",
        "sfvault-salesforce-orgs",
        "sfvault-s3",
        "sfvault-auth",
        "sfvault-nats-users",
        "sfvault-nats-tls",
    },
}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|DATABASE_URL|CREDENTIAL", re.IGNORECASE)
URL_WITH_PASSWORD = re.compile(r"://[^/@\s]+:[^/@\s]+@")
STREAM_REPLICAS = {"dev": "1", "prod": "3"}
NATS_URL = {"dev": "nats://nats:4222", "prod": "tls://nats:4222"}  # prod: components/nats-tls


def base_name(name: str) -> str:
    """A generated ConfigMap's or Secret's name without kustomize's hash suffix."""
    return re.sub(r"-[a-z0-9]{10}$", "", name)


def test_every_container_is_hardened(objects: list[Obj]) -> None:
    workloads = of_kind(objects, *WORKLOAD_KINDS)
    assert workloads
    for workload in workloads:
        where = f"{workload['kind']}/{workload['metadata']['name']}"
        spec = pod_spec(workload)
        pod = spec.get("securityContext", {})
        assert pod.get("runAsNonRoot") is True, where
        assert pod.get("runAsUser", 0) > 0, where
        assert pod.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
        assert spec.get("automountServiceAccountToken") is False, where
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC"), where
        for container in containers(workload):
            at = f"{where} container {container['name']}"
            sc = container.get("securityContext", {})
            assert sc.get("readOnlyRootFilesystem") is True, at
            assert sc.get("allowPrivilegeEscalation") is False, at
            assert sc.get("privileged", False) is False, at
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], at
            assert not sc.get("capabilities", {}).get("add"), at
            assert sc.get("runAsUser", 1) != 0, at
            for kind in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    assert resource in container.get("resources", {}).get(kind, {}), f"{at}: {kind}.{resource}"
            image = container["image"]
            assert "@sha256:" in image or re.search(r":[\w.-]+$", image.rsplit("/", 1)[-1]), f"{at}: {image}"
            assert not image.endswith(":latest"), at
            assert "livenessProbe" in container and "readinessProbe" in container, at


def test_services_have_native_grpc_probes_on_their_port(objects: list[Obj]) -> None:
    for name, port in SERVICE_PORTS.items():
        deployment = named(objects, "Deployment", name)
        (container,) = pod_spec(deployment)["containers"]
        assert [p["containerPort"] for p in container["ports"]] == [port], name
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"]["port"] == port, f"{name} {probe}"
        env = {e["name"]: e for e in container["env"]}
        assert env[f"SFVAULT_{name.upper()}_PORT"]["value"] == str(port)
        assert env["OTEL_SERVICE_NAME"]["value"] == name
        assert pod_spec(deployment)["serviceAccountName"] == name
        assert named(objects, "ServiceAccount", name)["automountServiceAccountToken"] is False
        service = named(objects, "Service", name)
        assert selects({"matchLabels": service["spec"]["selector"]}, pod_labels(deployment))
        assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(port, port)]


def test_service_ports_match_the_services_settings() -> None:
    # The default port in a service's settings is the one the manifests and images use.
    checked = []
    for name, port in SERVICE_PORTS.items():
        try:
            module = importlib.import_module(f"services.{name}.config")
        except ModuleNotFoundError:
            continue  # this service has no settings of its own yet
        for value in vars(module).values():
            fields = getattr(value, "model_fields", {})
            if f"{name}_port" in fields:
                assert fields[f"{name}_port"].default == port, name
                checked.append(name)
    assert "session" in checked


def test_configuration_from_the_configmap_and_secrets_from_secrets(overlay: str, objects: list[Obj]) -> None:
    config = config_data(objects)
    for key, value in config.items():
        assert key.startswith(("SFVAULT_", "OTEL_")), key
        if not key.endswith(("_DIR", "_FILE")):  # where secrets are mounted is no secret
            assert not SECRET_NAME.search(key), f"{key} looks secret: it belongs in a Secret"
        assert not URL_WITH_PASSWORD.search(value), f"{key} holds a password"
    for workload in of_kind(objects, *WORKLOAD_KINDS):
        for container in containers(workload):
            for env in container.get("env", []):
                # a reference to where a secret is mounted (file:/path) is no secret
                reference = env["name"].endswith("_REF") and env.get("value", "").startswith("file:/var/run/secrets/")
                if SECRET_NAME.search(env["name"]) and not env["name"].endswith("_FILE") and not reference:
                    assert "value" not in env, f"{workload['metadata']['name']}: {env['name']} is written in clear"
    for name in SERVICE_PORTS:
        (container,) = pod_spec(named(objects, "Deployment", name))["containers"]
        config_refs = [base_name(e["configMapRef"]["name"]) for e in container["envFrom"] if "configMapRef" in e]
        assert config_refs == ["sfvault-config"], name
        database = {e["name"]: e for e in container["env"]}["SFVAULT_DATABASE_URL"]
        assert base_name(database["valueFrom"]["secretKeyRef"]["name"]) == "sfvault-database"
        # The token-signing key is a file of the Secret sfvault-auth, named by SFVAULT_AUTH_KEY=file:<path>.
        key_path = Path(config["SFVAULT_AUTH_KEY"].removeprefix("file:"))
        spec = pod_spec(named(objects, "Deployment", name))
        (volume,) = [
            v for v in spec["volumes"] if base_name(v.get("secret", {}).get("secretName", "")) == "sfvault-auth"
        ]
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
        assert (Path(mount["mountPath"]) / "key", mount["readOnly"]) == (key_path, True), name


def test_every_reference_resolves(overlay: str, objects: list[Obj]) -> None:
    present = {(o["kind"], base_name(o["metadata"]["name"])) for o in objects}
    for workload in of_kind(objects, *WORKLOAD_KINDS):
        where = workload["metadata"]["name"]
        spec = pod_spec(workload)
        refs = []
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                refs.append(("ConfigMap", volume["configMap"]["name"]))
            if "secret" in volume and not volume["secret"].get("optional"):  # an optional one may be absent
                refs.append(("Secret", volume["secret"]["secretName"]))
            if "persistentVolumeClaim" in volume:
                refs.append(("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]))
        for container in containers(workload):
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    refs.append(("ConfigMap", source["configMapRef"]["name"]))
                if "secretRef" in source:
                    refs.append(("Secret", source["secretRef"]["name"]))
            for env in container.get("env", []):
                value_from = env.get("valueFrom", {})
                if "secretKeyRef" in value_from:
                    refs.append(("Secret", value_from["secretKeyRef"]["name"]))
                if "configMapKeyRef" in value_from:
                    refs.append(("ConfigMap", value_from["configMapKeyRef"]["name"]))
            mounts = {m["name"] for m in container.get("volumeMounts", [])}
            claims = {t["metadata"]["name"] for t in workload["spec"].get("volumeClaimTemplates", [])}
            assert mounts <= {v["name"] for v in spec.get("volumes", [])} | claims, f"{where}: {mounts}"
        if "serviceAccountName" in spec:
            refs.append(("ServiceAccount", spec["serviceAccountName"]))
        for kind, name in refs:
            external = kind == "Secret" and name in EXTERNAL_SECRETS[overlay]
            assert external or (kind, base_name(name)) in present, f"{where} refers to a missing {kind}/{name}"


def test_salesforce_secrets_are_files_for_discovery_and_jobrunner_only(objects: list[Obj]) -> None:
    directory = config_data(objects)["SFVAULT_SECRETS_DIR"]
    for name in SERVICE_PORTS:
        spec = pod_spec(named(objects, "Deployment", name))
        volumes = [
            v["name"]
            for v in spec["volumes"]
            if base_name(v.get("secret", {}).get("secretName", "")) == ("sfvault-salesforce-orgs")
        ]
        mounts = [m for m in spec["containers"][0]["volumeMounts"] if m["name"] in volumes]
        if name in ("discovery", "jobrunner"):
            assert [(m["mountPath"], m.get("readOnly")) for m in mounts] == [(directory, True)], name
        else:
            assert not volumes, f"{name} has no use for the Salesforce secrets"


def test_storage_file_repository(overlay: str, objects: list[Obj]) -> None:
    repository = config_data(objects)["SFVAULT_FILE_REPOSITORY"]
    spec = pod_spec(named(objects, "Deployment", "storage"))
    (container,) = spec["containers"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    secret_refs = {base_name(e["secretRef"]["name"]) for e in container["envFrom"] if "secretRef" in e}
    if overlay == "dev":
        assert repository == "file:///data/files"
        claim = volumes[mounts["/data/files"]]["persistentVolumeClaim"]["claimName"]
        assert named(objects, "PersistentVolumeClaim", claim)
        assert named(objects, "Deployment", "storage")["spec"]["strategy"]["type"] == "Recreate"  # one RWO writer
        assert not secret_refs
    else:
        assert repository.startswith("s3://")
        assert "/data/files" not in mounts
        assert secret_refs == {"sfvault-s3"}


def test_session_runs_as_one_replica_replaced_not_rolled(objects: list[Obj]) -> None:
    session = named(objects, "Deployment", "session")
    assert session["spec"]["replicas"] == 1
    assert session["spec"]["strategy"]["type"] == "Recreate"  # never two consumers folding the same stream
    for scaler in of_kind(objects, "HorizontalPodAutoscaler", "ScaledObject"):
        assert scaler["spec"]["scaleTargetRef"]["name"] != "session"


@pytest.mark.parametrize("overlay", ["prod"])
def test_prod_jobrunner_scales_on_its_work_queue_with_keda(objects: list[Obj]) -> None:
    scaled = named(objects, "ScaledObject", "jobrunner")
    assert scaled["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "jobrunner"}
    assert scaled["spec"]["minReplicaCount"] >= 1
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "nats-jetstream"
    meta = trigger["metadata"]
    assert meta["stream"] == BusConfig(url="").jobs_stream  # the stream the services declare
    assert meta["consumer"] == "jobrunner"
    # KEDA reaches the consumer's leader as <server_name>.<endpoint>: the headless service of the NATS pods.
    nats = named(objects, "StatefulSet", "nats")
    host, port = meta["natsServerMonitoringEndpoint"].split(":")
    assert host == f"{nats['spec']['serviceName']}.{NAMESPACE}.svc.cluster.local"
    headless = named(objects, "Service", nats["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    assert int(port) in {p["port"] for p in headless["spec"]["ports"] if p["name"] == "monitor"}
    assert "server_name: $POD_NAME" in nats_conf(objects)
    assert "replicas" not in named(objects, "Deployment", "jobrunner")["spec"]  # KEDA owns the count
    assert not of_kind(objects, "HorizontalPodAutoscaler")


@pytest.mark.parametrize("overlay", ["dev"])
def test_dev_jobrunner_scales_on_cpu(objects: list[Obj]) -> None:
    (hpa,) = of_kind(objects, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "jobrunner"
    assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"] >= 1
    assert pod_spec(named(objects, "Deployment", "jobrunner"))["containers"][0]["resources"]["requests"]["cpu"]
    assert not of_kind(objects, "ScaledObject")


def nats_conf(objects: list[Obj]) -> str:
    return nats_config_files(objects)["nats.conf"]


def nats_config_files(objects: list[Obj]) -> dict[str, str]:
    (config,) = [o for o in of_kind(objects, "ConfigMap") if o["metadata"]["name"].startswith("nats-config")]
    return {name: str(text) for name, text in config["data"].items()}


def test_nats_is_a_three_node_jetstream_cluster_and_streams_fit_it(
    overlay: str, objects: list[Obj], tmp_path: Path
) -> None:
    nats = named(objects, "StatefulSet", "nats")
    assert nats["spec"]["replicas"] == 3
    conf = nats_conf(objects)
    routes = re.findall(r"nats://(nats-\d)\.(\S+):6222", conf)
    assert routes == [(f"nats-{i}", nats["spec"]["serviceName"]) for i in range(3)]
    config = config_data(objects)
    assert config["SFVAULT_EVENTS_REPLICAS"] == config["SFVAULT_JOBS_REPLICAS"] == STREAM_REPLICAS[overlay]
    assert config["SFVAULT_NATS_URL"] == NATS_URL[overlay]
    # The real nats-server (the one the tests run) accepts the rendered configuration with the pod's variables.
    (container,) = pod_spec(nats)["containers"]
    env = {e["name"]: e.get("value", "nats-0") for e in container["env"]}
    from sforg.tls import ensure_certificates

    _ca, cert, key = ensure_certificates(tmp_path)  # stand-ins for the Secret sfvault-nats-tls (prod)
    for name, text in nats_config_files(objects).items():  # nats.conf and what it includes
        text = text.replace("/etc/nats-tls/tls.crt", str(cert)).replace("/etc/nats-tls/tls.key", str(key))
        (tmp_path / name).write_text(text)
    check = subprocess.run(
        [str(Path(sys.executable).parent / "nats-server"), "-t", "-c", str(tmp_path / "nats.conf")],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_disruption_budgets(objects: list[Obj]) -> None:
    budgets = of_kind(objects, "PodDisruptionBudget")
    for name in ("discovery", "jobrunner", "storage", "nats"):
        kind = "StatefulSet" if name == "nats" else "Deployment"
        labels = pod_labels(named(objects, kind, name))
        matching = [b for b in budgets if selects(b["spec"]["selector"], labels)]
        assert len(matching) == 1, name
        # maxUnavailable, not minAvailable: a single replica must still be drainable.
        assert matching[0]["spec"] == {"maxUnavailable": 1, "selector": matching[0]["spec"]["selector"]}
    session_labels = pod_labels(named(objects, "Deployment", "session"))
    assert not [b for b in budgets if selects(b["spec"]["selector"], session_labels)]


def test_service_addresses_name_rendered_services_and_ports(objects: list[Obj]) -> None:
    """The services find each other through the addresses in the ConfigMap: each names a rendered Service
    and one of its ports (the defaults, 127.0.0.1, would reach nothing in a pod)."""
    data = config_data(objects)
    services = {s["metadata"]["name"]: {p["port"] for p in s["spec"]["ports"]} for s in of_kind(objects, "Service")}
    for name in ("storage", "session", "discovery"):
        host, _, port = data[f"SFVAULT_{name.upper()}_ADDR"].partition(":")
        assert host in services and int(port) in services[host], (name, host, port)


def test_prod_services_speak_tls_to_nats_and_get_only_its_ca(overlay: str, objects: list[Obj]) -> None:
    config = config_data(objects)
    if overlay == "dev":
        assert "SFVAULT_NATS_TLS_CA_FILE" not in config
        return
    ca_file = Path(config["SFVAULT_NATS_TLS_CA_FILE"])
    for name in SERVICE_PORTS:
        spec = pod_spec(named(objects, "Deployment", name))
        secrets = {base_name(v.get("secret", {}).get("secretName", "")): v for v in spec["volumes"]}
        volume = secrets["sfvault-nats-tls"]
        assert [i["key"] for i in volume["secret"]["items"]] == ["ca.crt"], name  # never the server's key
        (mount,) = [m for m in spec["containers"][0]["volumeMounts"] if m["name"] == volume["name"]]
        assert Path(mount["mountPath"]) / "ca.crt" == ca_file and mount["readOnly"], name
    assert "tls {" in nats_config_files(objects)["tls.conf"]
