"""deploy/: nothing there can run on this machine (no Docker, no cluster), so every file is parsed
and checked against the code: topics, settings, processors, probes, scaling, metrics.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import re
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from pydantic import AliasChoices

from schemas import topics
from services import cli
from services.runtime import metrics
from services.runtime.kafka import topic_configs
from services.runtime.settings import Settings
from services.runtime.worker import Connections, ProcessorApp

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"

# The shared design's processors (each `python -m services.<name>`, its own consumer group).
PROCESSORS = ("intake", "triage", "routing", "planner", "tracker", "sla")
# Policy files and the processor whose team owns each (shared design).
POLICY_FILES = {"routing.yaml": "routing", "plan-policy.yaml": "planner", "sla-policies.yaml": "sla"}
PROMQL_BUILTINS = frozenset({"up"})


@functools.cache
def load(relative: str) -> Any:
    """A deploy file, parsed once per run (read-only: copy before changing it)."""
    return yaml.load((DEPLOY / relative).read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)


@functools.cache
def load_all(relative: str) -> list[dict[str, Any]]:
    text = (DEPLOY / relative).read_text(encoding="utf-8")
    return [doc for doc in yaml.load_all(text, Loader=yaml.CSafeLoader) if doc]


@functools.cache
def prepare_module() -> ModuleType:
    """deploy/prepare.py, which is a script, not a package module."""
    spec = importlib.util.spec_from_file_location("deploy_prepare", DEPLOY / "prepare.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def kustomization() -> dict[str, Any]:
    loaded: dict[str, Any] = load("kustomization.yaml")
    return loaded


def k8s_documents() -> list[dict[str, Any]]:
    return [doc for resource in kustomization()["resources"] for doc in load_all(resource)]


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in k8s_documents() if doc["kind"] == kind}


def config_map() -> dict[str, str]:
    data: dict[str, str] = of_kind("ConfigMap")["parley-settings"]["data"]
    return data


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = load("compose.yaml")
    return loaded


def compose_parley_services() -> dict[str, dict[str, Any]]:
    """Compose services that run our image (the processors and the prepare step)."""
    return {name: s for name, s in compose()["services"].items() if s.get("image") == "parley:dev"}


def resolve_compose(value: object) -> str:
    """A Compose value with ``${VAR:-default}`` replaced by its default, as on a machine that sets nothing."""
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", str(value))


def containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    spec = deployment["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def main_container(deployment: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


def setting_env_names() -> dict[str, str]:
    """Every environment variable a setting answers to, with the field it sets."""
    names = {}
    for field_name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            for choice in alias.choices:
                names[str(choice)] = field_name
        else:
            names[f"PARLEY_{field_name.upper()}"] = field_name
    return names


def dockerfile_env() -> dict[str, str]:
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    runtime_stage = text.split("\nFROM ")[-1]
    env: dict[str, str] = {}
    for block in re.findall(r"^ENV (.+?)(?<!\\)$", runtime_stage.replace("\\\n", " "), flags=re.MULTILINE):
        for pair in shlex.split(block):
            name, _, value = pair.partition("=")
            env[name] = value
    return env


def secret_examples() -> dict[tuple[str, str], str]:
    return {
        (doc["metadata"]["name"], key): value
        for doc in load_all("k8s/secrets.example.yaml")
        for key, value in doc["stringData"].items()
    }


def deployment_env(deployment: dict[str, Any]) -> dict[str, str]:
    """The main container's environment: the ConfigMap, then the Secret references (example values)."""
    container = main_container(deployment)
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(of_kind("ConfigMap")[source["configMapRef"]["name"]]["data"])
    secrets = secret_examples()
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = secrets[(ref["name"], ref["key"])]
    return env


@pytest.fixture
def only_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No setting from this machine's environment leaks into a Settings() built from a deploy file."""
    for name in setting_env_names():
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# ---- topics ----


@functools.cache
def topic_plan() -> dict[str, Any]:
    return {spec.name: spec for spec in prepare_module().load_topic_plan(DEPLOY / "topics.yaml")}


def test_topics_file_lists_every_topic_of_the_code_and_no_other() -> None:
    plan = topic_plan()  # load_topic_plan refuses a file that differs from ALL_TOPICS, either way
    assert set(plan) == set(topics.ALL_TOPICS)
    assert len(plan) == len(topics.ALL_TOPICS)


def test_topic_configs_agree_with_what_the_code_sets() -> None:
    settings = Settings(kafka_max_message_bytes=int(config_map().get("PARLEY_KAFKA_MAX_MESSAGE_BYTES", 10485760)))
    for name, spec in topic_plan().items():
        # The workers' own topic creation sets max.message.bytes on exactly these topics (services.runtime.kafka).
        for key, value in topic_configs(settings, name).items():
            assert spec.configs.get(key) == value, f"{name}: {key}"
        if name not in topics.LARGE_RECORD_TOPICS:
            assert "max.message.bytes" not in spec.configs, name
        assert int(spec.configs["retention.ms"]) >= 24 * 3600 * 1000, name
        assert spec.configs["cleanup.policy"] == "delete", name  # state lives in PostgreSQL, never in compacted topics
        assert 1 <= int(spec.configs["min.insync.replicas"]) < spec.replication_factor, name
    raw_retention = {int(topic_plan()[t].configs["retention.ms"]) for t in topics.RAW_TOPICS}
    assert max(raw_retention) <= min(int(s.configs["retention.ms"]) for s in topic_plan().values())


def test_every_topic_has_the_partitions_the_workers_would_create() -> None:
    partitions = {spec.partitions for spec in topic_plan().values()}
    assert len(partitions) == 1, "co-partitioned agents need equal partition counts on the topics they read"
    (count,) = partitions
    assert int(config_map()["PARLEY_KAFKA_PARTITIONS"]) == count
    for name, service in compose_parley_services().items():
        assert int(service["environment"]["PARLEY_KAFKA_PARTITIONS"]) == count, name
    assert {spec.replication_factor for spec in topic_plan().values()} == {
        int(config_map()["PARLEY_KAFKA_REPLICATION_FACTOR"])
    }


def test_prepare_caps_replication_for_a_one_broker_laptop() -> None:
    prepare = prepare_module()
    capped = prepare.cap_replication(list(topic_plan().values()), 1)
    assert {spec.replication_factor for spec in capped} == {1}
    assert {spec.configs["min.insync.replicas"] for spec in capped} == {"1"}
    assert [s.name for s in capped] == list(topic_plan())


def test_prepare_refuses_a_topics_file_that_misses_a_topic(tmp_path: Path) -> None:
    document = copy.deepcopy(load("topics.yaml"))
    del document["topics"][topics.SLA_ALERTS]
    document["topics"]["sla.alert"] = {"read_by": []}
    broken = tmp_path / "topics.yaml"
    broken.write_text(yaml.safe_dump(document), encoding="utf-8")
    with pytest.raises(Exception, match=r"missing \['sla.alerts'\], not a topic of ours \['sla.alert'\]"):
        prepare_module().load_topic_plan(broken)


def read_by(processor: str) -> list[str]:
    return [name for name, spec in topic_plan().items() if processor in spec.read_by]


@pytest.mark.parametrize("processor", PROCESSORS)
def test_topics_read_by_each_processor_match_its_code_where_it_says(processor: str) -> None:
    assert read_by(processor), f"{processor} reads nothing in deploy/topics.yaml"
    if importlib.util.find_spec(f"services.{processor}.app") is None:
        pytest.skip(f"services.{processor}.app is not written yet")
    app_module = importlib.import_module(f"services.{processor}.app")
    consumed = getattr(app_module, "consumed_topics", None)
    if consumed is None:
        pytest.skip(f"services.{processor}.app has no consumed_topics(settings) to compare with")
    assert sorted(consumed(Settings())) == sorted(read_by(processor))


# ---- processors: a module, a Deployment, a ScaledObject, a Compose service, a scrape target ----


def test_every_processor_that_parley_run_starts_is_deployed() -> None:
    assert set(cli.PROCESSORS) <= set(PROCESSORS)


@pytest.mark.parametrize("processor", PROCESSORS)
def test_processor_module_exists(processor: str) -> None:
    found = importlib.util.find_spec(f"services.{processor}") is not None and (
        importlib.util.find_spec(f"services.{processor}.__main__") is not None
    )
    if processor not in cli.PROCESSORS and not found:
        pytest.skip(f"services.{processor} is being written; it is checked once services/cli.py PROCESSORS lists it")
    assert found, f"deploy/ runs `python -m services.{processor}`, which does not exist"


@pytest.mark.parametrize("processor", PROCESSORS)
def test_processor_has_a_deployment_running_its_module(processor: str) -> None:
    deployment = of_kind("Deployment")[f"parley-{processor}"]
    container = main_container(deployment)
    assert container["command"] == ["python", "-m", f"services.{processor}"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert labels["app.kubernetes.io/component"] == processor
    assert "replicas" not in deployment["spec"], "KEDA owns the replica count"
    init = deployment["spec"]["template"]["spec"]["initContainers"]
    assert [c["command"] for c in init] == [["python", "deploy/prepare.py"]]
    assert {c["image"] for c in containers(deployment)} == {
        f"{image['name']}:{image['newTag']}" for image in kustomization()["images"]
    }


@pytest.mark.parametrize("processor", PROCESSORS)
def test_processor_has_probes_on_the_http_port(processor: str) -> None:
    deployment = of_kind("Deployment")[f"parley-{processor}"]
    container = main_container(deployment)
    port = int(config_map()["PARLEY_HTTP_PORT"])
    assert container["ports"] == [{"name": "http", "containerPort": port}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    # Readiness asks the database with a 2 s limit (services.runtime.worker): the probe must wait longer.
    assert container["readinessProbe"]["timeoutSeconds"] > 2
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == "/metrics"
    assert config_map()["PARLEY_HTTP_HOST"] == "0.0.0.0"


@pytest.mark.parametrize("processor", PROCESSORS)
def test_processor_scales_on_its_consumer_lag_up_to_its_partitions(processor: str, tmp_path: Path) -> None:
    scaled = of_kind("ScaledObject")[f"parley-{processor}"]
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] == f"parley-{processor}"
    assert spec["minReplicaCount"] >= 1
    assert spec["maxReplicaCount"] == min(topic_plan()[t].partitions for t in read_by(processor))
    (trigger,) = spec["triggers"]
    meta = trigger["metadata"]
    assert trigger["type"] == "kafka"
    assert meta["bootstrapServers"] == config_map()["PARLEY_KAFKA_BOOTSTRAP_SERVERS"]
    # The group KEDA watches is the one the worker joins: the faust app id of ProcessorApp.
    settings = Settings(data_dir=tmp_path, kafka_topic_prefix=config_map()["PARLEY_KAFKA_TOPIC_PREFIX"])
    app = ProcessorApp(
        processor, settings, Connections("127.0.0.1:9", "postgresql://x@127.0.0.1:9/x"), relays_outbox=False
    )
    assert meta["consumerGroup"] == app.conf.id
    if "topic" in meta:
        assert read_by(processor) == [meta["topic"]], "a trigger naming one topic must be the only topic read"
    else:
        assert len(read_by(processor)) > 1
    assert int(meta["lagThreshold"]) > 0
    assert meta["offsetResetPolicy"] == "earliest"  # as consumer_auto_offset_reset in services.runtime.worker
    mechanism = config_map()["PARLEY_KAFKA_SASL_MECHANISM"]
    assert meta["sasl"] == mechanism.lower().replace("-", "_").replace("scram_sha_", "scram_sha")
    assert (meta["tls"] == "enable") == config_map()["PARLEY_KAFKA_SECURITY_PROTOCOL"].endswith("SSL")
    assert trigger["authenticationRef"]["name"] in of_kind("TriggerAuthentication")


@pytest.mark.parametrize("processor", PROCESSORS)
def test_processor_has_a_compose_service_and_a_scrape_target(processor: str) -> None:
    service = compose()["services"][processor]
    assert service["image"] == "parley:dev"
    assert service["command"] == ["python", "-m", f"services.{processor}"]
    assert service["depends_on"]["prepare"]["condition"] == "service_completed_successfully"
    assert "./config:/app/deploy/config:ro" in service["volumes"]
    (job,) = load("prometheus/prometheus.yml")["scrape_configs"]
    (discovery,) = job["dns_sd_configs"]
    assert processor in discovery["names"]
    assert discovery["port"] == int(service["environment"]["PARLEY_HTTP_PORT"])
    assert f":{discovery['port']}/readyz" in " ".join(service["healthcheck"]["test"])


# ---- settings ----


def test_every_parley_variable_named_in_deploy_files_is_a_setting() -> None:
    known = setting_env_names()
    named: dict[str, str] = {}
    for key in config_map():
        named[key] = "k8s/settings.yaml"
    for deployment in of_kind("Deployment").values():
        for container in containers(deployment):
            for item in container.get("env", []):
                named[item["name"]] = f"Deployment {deployment['metadata']['name']}"
    for name, service in compose_parley_services().items():
        for key in service["environment"]:
            named[key] = f"compose service {name}"
    for key in dockerfile_env():
        if key.startswith("PARLEY_"):
            named[key] = "Dockerfile"
    for path in DEPLOY.rglob("*"):
        if path.is_file() and path.suffix in {".yaml", ".yml", ".md", ""} and "config" not in path.parts:
            for key in re.findall(r"\bPARLEY_[A-Z0-9_]+\b", path.read_text(encoding="utf-8")):
                named.setdefault(key, str(path.relative_to(DEPLOY)))
    unknown = {name: where for name, where in named.items() if name not in known}
    assert not unknown, f"not settings in services/runtime/settings.py: {unknown}"
    assert len(named) >= 15


def test_deployment_environment_makes_valid_settings(only_env: pytest.MonkeyPatch) -> None:
    for deployment in of_kind("Deployment").values():
        for container in containers(deployment):
            assert container["envFrom"] == main_container(deployment)["envFrom"]
            assert container["env"] == main_container(deployment)["env"]
        for name, value in deployment_env(deployment).items():
            only_env.setenv(name, value)
        settings = Settings()
        assert settings.kafka_bootstrap_servers == config_map()["PARLEY_KAFKA_BOOTSTRAP_SERVERS"]
        assert settings.database_url is not None
        assert settings.kafka_sasl_password is not None
        assert not settings.uses_development_pii_key
        assert settings.http_port == 8080
        assert str(settings.data_dir) in {m["mountPath"] for m in main_container(deployment)["volumeMounts"]}
        assert str(settings.kafka_ssl_cafile).startswith(
            next(m["mountPath"] for m in main_container(deployment)["volumeMounts"] if m["name"] == "kafka-ca")
        )


def test_compose_and_image_environment_make_valid_settings(only_env: pytest.MonkeyPatch) -> None:
    for name, value in dockerfile_env().items():
        if name.startswith("PARLEY_"):
            only_env.setenv(name, value)
    image_settings = Settings()
    assert image_settings.http_port == 8080
    assert image_settings.http_host == "0.0.0.0"
    for service in compose_parley_services().values():
        for name, value in service["environment"].items():
            only_env.setenv(name, resolve_compose(value))
        settings = Settings()
        assert settings.kafka_bootstrap_servers == "kafka:9092"
        assert settings.database_url is not None
        assert settings.kafka_replication_factor == 1, "one broker on a laptop"
        assert not settings.uses_development_pii_key


def test_secrets_referenced_exist_and_stay_out_of_the_config_map() -> None:
    examples = secret_examples()
    for deployment in of_kind("Deployment").values():
        for container in containers(deployment):
            for item in container.get("env", []):
                ref = item["valueFrom"]["secretKeyRef"]
                assert (ref["name"], ref["key"]) in examples, item["name"]
        volumes = deployment["spec"]["template"]["spec"]["volumes"]
        for volume in volumes:
            if "secret" in volume:
                assert any(name == volume["secret"]["secretName"] for name, _ in examples)
    for auth in of_kind("TriggerAuthentication").values():
        for ref in auth["spec"]["secretTargetRef"]:
            assert (ref["name"], ref["key"]) in examples
    secret_settings = {"PARLEY_DATABASE_URL", "PARLEY_PII_TOKEN_KEY", "PARLEY_KAFKA_SASL_PASSWORD", "DATABASE_URL"}
    assert not secret_settings & set(config_map()), "secrets belong in a Secret"
    resources = kustomization()["resources"]
    assert "k8s/secrets.example.yaml" not in resources, "example values must never be applied"


def test_policy_files_are_mounted_where_the_settings_look() -> None:
    (generator,) = kustomization()["configMapGenerator"]
    mounted = {Path(f).name for f in generator["files"]}
    defaults = {
        name: field.default
        for name, field in Settings.model_fields.items()
        if isinstance(field.default, Path) and field.default.parts[:2] == ("deploy", "config")
    }
    assert {path.name for path in defaults.values()} <= mounted, "a policy setting whose file is not mounted"
    assert mounted == set(POLICY_FILES)
    for file_name in mounted:
        if POLICY_FILES[file_name] in cli.PROCESSORS:
            assert (DEPLOY / "config" / file_name).is_file(), file_name
    # The image's working directory is /app, so the relative defaults resolve to the mount.
    assert "WORKDIR /app" in (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    for deployment in of_kind("Deployment").values():
        mounts = {m["name"]: m["mountPath"] for m in main_container(deployment)["volumeMounts"]}
        assert mounts["policies"] == "/app/deploy/config"
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        assert volumes["policies"]["configMap"]["name"] == generator["name"]


# ---- files and references ----


def test_every_kubernetes_document_is_well_formed() -> None:
    for resource in kustomization()["resources"]:
        assert (DEPLOY / resource).is_file(), resource
    kinds: dict[str, int] = {}
    for doc in k8s_documents():
        assert doc["apiVersion"]
        assert doc["kind"]
        assert doc["metadata"]["name"]
        kinds[doc["kind"]] = kinds.get(doc["kind"], 0) + 1
    assert kinds == {
        "Namespace": 1,
        "ConfigMap": 1,
        "TriggerAuthentication": 1,
        "Deployment": len(PROCESSORS),
        "ScaledObject": len(PROCESSORS),
    }
    for deployment in of_kind("Deployment").values():
        security = deployment["spec"]["template"]["spec"]["securityContext"]
        assert security["runAsNonRoot"] is True
        for container in containers(deployment):
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert "memory" in container["resources"]["limits"]
        writable = {m["mountPath"] for m in main_container(deployment)["volumeMounts"] if not m.get("readOnly")}
        assert {"/tmp", config_map()["PARLEY_DATA_DIR"]} <= writable


def test_compose_stack_is_complete_and_its_files_exist() -> None:
    stack = compose()
    services = stack["services"]
    assert {"kafka", "postgres", "prepare", "prometheus", "grafana", *PROCESSORS} == set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    assert services["kafka"]["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert services["prepare"]["command"][:2] == ["python", "deploy/prepare.py"]
    assert {d: c["condition"] for d, c in services["prepare"]["depends_on"].items()} == {
        "kafka": "service_healthy",
        "postgres": "service_healthy",
    }
    for name, service in services.items():
        build = service.get("build")
        if build:
            assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile", name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source}"
            else:
                assert source in stack["volumes"], f"{name}: {source}"
    prometheus_mounts = dict(v.split(":")[:2] for v in services["prometheus"]["volumes"] if v.startswith("."))
    assert load("prometheus/prometheus.yml")["rule_files"] == [prometheus_mounts["./prometheus/alerts.yml"]]
    home = services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    dashboards_mount = dict(v.split(":")[:2] for v in services["grafana"]["volumes"] if v.startswith("."))
    assert (DEPLOY / "grafana/dashboards" / Path(home).relative_to(dashboards_mount["./grafana/dashboards"])).is_file()


def test_dockerfile_copies_what_exists_and_runs_a_processor() -> None:
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    for line in text.splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            *sources, _target = line.split()[1:]
            for source in sources:
                assert (ROOT / source).exists(), source
    assert 'CMD ["python", "-m", "services.intake"]' in text
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8")
    for needed in ("!pyproject.toml", "!constraints.txt", "!schemas/", "!services/", "!deploy/topics.yaml"):
        assert needed in ignore


# ---- metrics named in alerts and the dashboard ----

METRIC_NAME = re.compile(r"\b(parley_[a-z0-9_]+|process_[a-z0-9_]+|python_[a-z0-9_]+|[a-z_][a-z0-9_]*(?=\s*\{))")
PROMQL_FUNCTIONS_AND_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})


def promql_metric_names(expr: str) -> set[str]:
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    return {name for name in METRIC_NAME.findall(without_strings) if name not in PROMQL_FUNCTIONS_AND_KEYWORDS}


def balanced(expr: str) -> bool:
    depth = {"(": 0, "{": 0, "[": 0}
    closing = {")": "(", "}": "{", "]": "["}
    for char in re.sub(r'"[^"]*"', "", expr):
        if char in depth:
            depth[char] += 1
        elif char in closing:
            depth[closing[char]] -= 1
            if depth[closing[char]] < 0:
                return False
    return not any(depth.values())


def alert_rules() -> Iterator[dict[str, Any]]:
    for group in load("prometheus/alerts.yml")["groups"]:
        yield from group["rules"]


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = load("grafana/dashboards/parley.json")
    return loaded


def dashboard_queries() -> Iterator[str]:
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            yield target["expr"]
    for variable in dashboard()["templating"]["list"]:
        yield variable["definition"]


def test_promql_name_extraction() -> None:
    assert promql_metric_names('sum by (processor) (rate(parley_events_in_total{processor=~"a|b"}[5m]))') == {
        "parley_events_in_total"
    }
    assert promql_metric_names('up{job="parley"} == 0') == {"up"}
    assert promql_metric_names("label_values(parley_events_in_total, processor)") == {"parley_events_in_total"}
    assert promql_metric_names("histogram_quantile(0.9, sum by (le) (rate(parley_x_bucket[5m])))") == {
        "parley_x_bucket"
    }
    assert not balanced("sum(rate(x[5m])")


def test_every_metric_in_alert_rules_and_dashboard_is_defined_by_the_code() -> None:
    defined = metrics.exposed_names() | PROMQL_BUILTINS
    used: dict[str, str] = {}
    for rule in alert_rules():
        assert balanced(rule["expr"]), rule["alert"]
        for name in promql_metric_names(rule["expr"]):
            used[name] = f"alert {rule['alert']}"
    for expr in dashboard_queries():
        assert balanced(expr), expr
        for name in promql_metric_names(expr):
            used[name] = f"dashboard: {expr}"
    unknown = {name: where for name, where in used.items() if name not in defined}
    assert not unknown, f"metrics the code does not define: {unknown}"
    # The brief's alerts: lag, dead letters, SLA breaches, processing errors, outbox backlog.
    for family in (
        "parley_consumer_lag",
        "parley_dead_letters_total",
        "parley_sla_breaches_total",
        "parley_retries_total",
        "parley_outbox_oldest_age_seconds",
    ):
        assert any(family in rule["expr"] for rule in alert_rules()), family


def test_alert_rules_are_complete() -> None:
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names))
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        if "for" in rule:
            assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]


def test_dashboard_uses_the_provisioned_datasource() -> None:
    (datasource,) = load("grafana/provisioning/datasources/prometheus.yaml")["datasources"]
    (provider,) = load("grafana/provisioning/dashboards/parley.yaml")["providers"]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    uids = {target["datasource"]["uid"] for panel in dashboard()["panels"] for target in panel.get("targets", [])} | {
        panel["datasource"]["uid"] for panel in dashboard()["panels"] if "datasource" in panel
    }
    assert uids == {datasource["uid"]}
    ids = [panel["id"] for panel in dashboard()["panels"]]
    assert len(ids) == len(set(ids))
