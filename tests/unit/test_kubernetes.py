"""packaging/kubernetes/ivr-server.yaml: valid against the Kubernetes API's schema (strict: an
unknown field is an error), and consistent with the server it runs: every IVR_ variable is a
setting, the probes ask the paths the metrics listener serves, on its port."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from ivr_server.config.settings import Settings
from tests.conftest import REPO

kv = pytest.importorskip("kubernetes_validate")
MANIFEST = REPO / "packaging" / "kubernetes" / "ivr-server.yaml"
VERSION = "1.33"  # a current release; the objects are all GA (apps/v1, batch/v1, policy/v1)


def documents() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]


def test_every_object_is_valid_against_the_api_schema() -> None:
    docs = documents()
    assert [d["kind"] for d in docs] == ["Secret", "ConfigMap", "Job", "StatefulSet", "Service",
                                         "PodDisruptionBudget"]  # fmt: skip
    for doc in docs:
        kv.validate(doc, VERSION, strict=True)


def test_the_validator_catches_a_misspelt_field() -> None:
    stateful = copy.deepcopy(next(d for d in documents() if d["kind"] == "StatefulSet"))
    stateful["spec"]["replicass"] = stateful["spec"].pop("replicas")
    with pytest.raises(kv.ValidationError):
        kv.validate(stateful, VERSION, strict=True)


def test_its_settings_are_the_servers_and_the_probes_its_listener() -> None:
    docs = {d["kind"]: d for d in documents()}
    pod = docs["StatefulSet"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {**docs["ConfigMap"]["data"], **docs["Secret"]["stringData"]}
    env |= {e["name"]: f"from {e['valueFrom']['fieldRef']['fieldPath']}" for e in container["env"]}
    fields = set(Settings.model_fields)
    unknown = sorted(name for name in env if name.removeprefix("IVR_").lower() not in fields)
    assert unknown == []
    plain = {k: v for k, v in env.items() if not v.startswith("from ")}
    settings = Settings.model_validate({k.removeprefix("IVR_").lower(): v for k, v in plain.items()})
    port = next(p["containerPort"] for p in container["ports"] if p["name"] == "metrics")
    assert settings.metrics_port == port and settings.metrics_host == "0.0.0.0"
    probes = {k: container[k]["httpGet"]["path"] for k in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert probes == {"startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/readyz"}
    assert pod["terminationGracePeriodSeconds"] > settings.drain_timeout_s  # the drain fits
    assert docs["Job"]["spec"]["template"]["spec"]["containers"][0]["args"] == ["db", "upgrade"]
