"""Every overlay renders with `kubectl kustomize`, and every rendered object validates offline: against the
Kubernetes schemas that kubernetes-validate ships, or, for a custom resource, against a schema kept here."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest

from tests.k8s.conftest import NAMESPACE, SERVICE_PORTS, Obj, named, of_kind

KUBERNETES_VERSION = "1.37.0"
# Custom resources have no schema in kubernetes-validate: each one an overlay uses has its own here.
CUSTOM_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): Path(__file__).parent / "schemas" / "scaledobject-keda.sh-v1alpha1.json"
}
WORKLOADS = {
    "dev": {*SERVICE_PORTS, "nats", "postgres", "otel-collector", "jaeger", "prometheus", "grafana"},
    "prod": {*SERVICE_PORTS, "nats"},
}


def validate(obj: Obj) -> None:
    """Raise if the object does not match its schema (strict: unknown fields are errors)."""
    custom = CUSTOM_SCHEMAS.get((obj["apiVersion"], obj["kind"]))
    if custom:
        jsonschema.validate(obj, json.loads(custom.read_text()))
    else:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_overlay_renders_its_workloads_into_the_namespace(overlay: str, objects: list[Obj]) -> None:
    workloads = {o["metadata"]["name"] for o in of_kind(objects, "Deployment", "StatefulSet")}
    assert workloads == WORKLOADS[overlay]
    assert named(objects, "Namespace", NAMESPACE)
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == NAMESPACE, f"{obj['kind']}/{obj['metadata']['name']}"
    keys = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(keys) == len(set(keys)), "an object is rendered twice"


def test_every_object_validates_against_its_schema(objects: list[Obj]) -> None:
    problems = []
    for obj in objects:
        try:
            validate(obj)
        except kubernetes_validate.SchemaNotFoundError as exc:
            problems.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message} (add one to CUSTOM_SCHEMAS)")
        except jsonschema.ValidationError as exc:
            path = "/".join(str(p) for p in exc.absolute_path)
            problems.append(f"{obj['kind']}/{obj['metadata']['name']}: {path}: {exc.message}")
    assert not problems, "\n".join(problems)


def test_validation_rejects_a_misspelt_field(objects: list[Obj]) -> None:
    # The check above must have teeth: strict validation refuses a field the API server would drop silently.
    deployment = copy.deepcopy(named(objects, "Deployment", "session"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grcp"] = {"port": 50054}
    with pytest.raises(jsonschema.ValidationError):
        validate(deployment)


@pytest.mark.parametrize("overlay", ["prod"])
def test_scaledobject_schema_rejects_a_trigger_without_its_consumer(objects: list[Obj]) -> None:
    scaled = named(objects, "ScaledObject", "jobrunner")
    validate(scaled)
    broken = copy.deepcopy(scaled)
    del broken["spec"]["triggers"][0]["metadata"]["consumer"]
    with pytest.raises(jsonschema.ValidationError):
        validate(broken)
    misspelt = copy.deepcopy(scaled)
    misspelt["spec"]["maxReplicas"] = misspelt["spec"].pop("maxReplicaCount")
    with pytest.raises(jsonschema.ValidationError):
        validate(misspelt)
