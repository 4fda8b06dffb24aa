"""deploy/kubernetes: the kustomize base, its filesystem and S3 overlays, the Flower and
ServiceMonitor components.

No cluster runs here. kustomize itself renders each variant (``kubectl kustomize``: the machine
image's kubectl carries kustomize v5), every resource is validated against the Kubernetes
schemas of the oldest supported and the newest version (kubernetes-validate, strict: an unknown
field fails), and what the pods would run is checked against the image: each ``args`` parsed by
the ``warmer`` command line (and Celery's, for what it passes on), every variable one the warmer
reads, the settings each container would read from its mounts parsed, ports and probe paths the
receiver's and Flower's, the user the Dockerfile's.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import typer
import yaml
from celery import Celery
from celery.bin.base import CLIContext
from celery.bin.beat import beat as celery_beat
from celery.bin.celery import celery as celery_root
from celery.bin.control import inspect as celery_inspect
from celery.bin.worker import worker as celery_worker
from celery.worker.control import Panel
from flower.urls import handlers as flower_handlers  # type: ignore[import-untyped]
from typer.core import TyperGroup

from tests.support.compose import COMPOSE, ROOT
from worker.cli.main import app
from worker.cli.serve import GRACEFUL_SHUTDOWN_SECONDS
from worker.config import secretfiles
from worker.config.settings import Settings, env_name, parse_settings, warn_unknown_variables
from worker.receiver.ops import OpsRoutes
from worker.state import StateStore

KUBE = ROOT / "deploy/kubernetes"
#: The oldest Kubernetes the manifests are for (a budget's unhealthyPodEvictionPolicy), and the
#: newest whose schemas kubernetes-validate has.
VERSIONS = ("1.27", kubernetes_validate.utils.latest_version())
#: The overlays' lines a user uncomments to add the optional components.
COMPONENTS = "# components:\n#   - ../../components/flower\n#   - ../../components/servicemonitor\n"
VARIANTS = ("filesystem", "s3", "filesystem+components", "s3+components")
#: The keys of the Secret `warmer` the manifests read, with a value of each one's shape.
SECRET_VALUES = {
    "webhook-token": "0123456789abcdef" * 4,
    "broker-url": "redis://:pw@warmer-redis:6379/0",
    "state-url": "redis://:pw@warmer-redis:6379/1",
    "flower-password": "a-real-password-0123",
    "s3-access-key": "AKIAEXAMPLE",
    "s3-secret-key": "secret-example",
    "sentry-dsn": "https://key@sentry.example/1",
}
RECEIVER_ROUTES = {r.path for r in OpsRoutes(cast(StateStore, None), Counter(), {}).routes()}
FLOWER_ROUTES = [h[0] if isinstance(h, tuple) else h.regex.pattern for h in flower_handlers]
CELERY = CLIContext(app=Celery(set_as_current=False), no_color=True, workdir=None)
Resource = dict[str, Any]


def _kustomize(directory: Path) -> list[Resource]:
    found = shutil.which("kustomize")
    command = [found, "build"] if found else ["kubectl", "kustomize"]
    if not found and shutil.which("kubectl") is None:
        if os.environ.get("WARMER_REQUIRE_E2E") == "1":
            pytest.fail("neither kustomize nor kubectl is installed (WARMER_REQUIRE_E2E=1)")
        pytest.skip("neither kustomize nor kubectl (which carries kustomize) is installed")
    env = {"PATH": os.environ["PATH"], "HOME": str(directory), "KUBECONFIG": os.devnull}
    command.append(str(directory))
    proc = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Resource]]:
    """Each variant as kustomize renders it; a +components one is its overlay with the
    ``components:`` lines uncommented, as the overlay tells a user to."""
    tree = tmp_path_factory.mktemp("kube") / "kubernetes"
    shutil.copytree(KUBE, tree)
    out = {}
    for overlay in ("filesystem", "s3"):
        out[overlay] = _kustomize(tree / "overlays" / overlay)
        kustomization = tree / "overlays" / overlay / "kustomization.yaml"
        text = kustomization.read_text()
        assert COMPONENTS in text, f"{overlay}: the components' lines changed"
        kustomization.write_text(text.replace(COMPONENTS, COMPONENTS.replace("# ", "")))
        out[f"{overlay}+components"] = _kustomize(kustomization.parent)
    return out


def _of(resources: list[Resource], kind: str) -> dict[str, Resource]:
    return {r["metadata"]["name"]: r for r in resources if r["kind"] == kind}


def _config_maps(resources: list[Resource]) -> dict[str, dict[str, str]]:
    return {name: r.get("data", {}) for name, r in _of(resources, "ConfigMap").items()}


def _containers(resources: list[Resource]) -> Iterator[tuple[Resource, Resource]]:
    """Each container with its pod template (``metadata``, ``spec``)."""
    for deployment in _of(resources, "Deployment").values():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            yield deployment["spec"]["template"], container


def _option(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_resource_passes_the_kubernetes_schemas(
    rendered: dict[str, list[Resource]], variant: str, version: str
) -> None:
    more = "components" in variant  # Flower's Deployment and Service, the ServiceMonitor
    kinds = Counter(Deployment=3 + more, Service=1 + more, ConfigMap=2, ServiceMonitor=more)
    assert Counter(r["kind"] for r in rendered[variant]) == kinds + Counter(PodDisruptionBudget=2)
    for resource in rendered[variant]:
        if resource["kind"] == "ServiceMonitor":  # a CRD's: test_the_servicemonitor_...
            continue
        try:
            kubernetes_validate.validate(resource, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{resource['kind']}/{resource['metadata']['name']}: {where}: {exc}")


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_command_is_one_the_image_runs(
    rendered: dict[str, list[Resource]], variant: str
) -> None:
    # The image's ENTRYPOINT is `warmer`: no container replaces it, and its args are a warmer
    # command with options that command takes; worker and beat pass theirs on to Celery's.
    assert re.search(r'^ENTRYPOINT \["warmer"\]$', (ROOT / "Dockerfile").read_text(), re.M)
    group = cast(TyperGroup, typer.main.get_command(app))
    root = group.context_class(group, info_name="warmer")
    for _, container in _containers(rendered[variant]):
        assert "command" not in container, container["name"]
        name, *options = container["args"]
        assert name == container["name"], "each container is named after its command"
        command = group.get_command(root, name)
        assert command is not None, f"warmer has no command {name!r}"
        passed_on = command.make_context(name, list(options), parent=root).args
        celery = {"worker": celery_worker, "beat": celery_beat}.get(name)
        if celery is not None:
            celery.make_context(name, list(passed_on), obj=CELERY)
        else:
            assert not passed_on, f"warmer {name} takes no {passed_on}"


def test_the_worker_probe_pings_the_worker_by_its_name(
    rendered: dict[str, list[Resource]],
) -> None:
    (worker,) = [c for _, c in _containers(rendered["filesystem"]) if c["name"] == "worker"]
    shell, flag, script = worker["livenessProbe"]["exec"]["command"]
    assert (shell, flag) == ("sh", "-c")
    argv = shlex.split(script)
    at = argv.index("inspect")
    # `celery -A worker` loads worker/celery.py's app; `inspect ping -d` names the worker by its
    # default node name, celery@ and the pod's host name (the args set no other).
    assert argv[:2] == ["exec", "celery"], script
    assert celery_root.make_context("celery", argv[2:at], obj=CELERY).params["app"] == "worker"
    assert (ROOT / "worker/celery.py").is_file()
    params = celery_inspect.make_context("inspect", argv[at + 1 :], obj=CELERY).params
    assert Panel.meta[params["command"]].type == "inspect"
    assert params["destination"] == ["celery@$(hostname)"]
    assert not {"-n", "--hostname"} & set(worker["args"])
    assert worker["livenessProbe"]["timeoutSeconds"] > params["timeout"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variable_is_one_the_warmer_reads(
    rendered: dict[str, list[Resource]], variant: str
) -> None:
    settings = {env_name(n) for n, f in Settings.model_fields.items() if not f.exclude}
    config_maps = _config_maps(rendered[variant])
    for _, container in _containers(rendered[variant]):
        names = [e["name"] for e in container.get("env", [])]
        for source in container.get("envFrom", []):
            names += list(config_maps[source["configMapRef"]["name"]])
        for name in names:  # REGISTRY_...: the registry's overrides, read as the registry does
            known = name in settings | secretfiles.FILE_VARIABLES or name.startswith("REGISTRY_")
            assert known, f"{container['name']}: {name} is no variable the warmer reads"
        assert warn_unknown_variables(dict.fromkeys(names, "x")) == [], container["name"]
        assert len(names) == len(set(names)), f"{container['name']}: a variable set twice"


def _mount(spec: Resource, container: Resource, maps: dict[str, dict[str, str]], at: Path) -> None:
    """The container's volumes under ``at`` as the kubelet mounts them: the Secret's items
    (values of each one's shape), the ConfigMaps' data, empty directories."""
    volumes = {v["name"]: v for v in spec["volumes"]}
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        into = at / mount["mountPath"].lstrip("/")
        into.mkdir(parents=True, exist_ok=True)
        if "secret" in volume:
            assert volume["secret"]["secretName"] == "warmer"
            for item in volume["secret"]["items"]:  # only what the container reads
                (into / item["path"]).write_text(SECRET_VALUES[item["key"]] + "\n")
        for key, value in maps.get(volume.get("configMap", {}).get("name"), {}).items():
            (into / key).write_text(value)


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_container_reads_valid_settings_from_what_it_mounts(
    rendered: dict[str, list[Resource]], variant: str, tmp_path: Path
) -> None:
    config_maps = _config_maps(rendered[variant])
    for pod, container in _containers(rendered[variant]):
        name, at = container["name"], tmp_path / container["name"]
        _mount(pod["spec"], container, config_maps, at)
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            env |= config_maps[source["configMapRef"]["name"]]
        for item in container.get("env", []):
            ref = item.get("valueFrom", {}).get("secretKeyRef")
            if ref is None:
                env[item["name"]] = item["value"]
            else:  # only the optional Sentry DSN: absent here, as without Sentry
                assert ref == {"name": "warmer", "key": "sentry-dsn", "optional": True}
        with pytest.MonkeyPatch.context() as patch:  # the suite's environment has no settings
            for variable, value in env.items():  # a path: the file the container mounts there
                patch.setenv(variable, str(at / value.lstrip("/")) if value[0] == "/" else value)
            settings = parse_settings()
        assert settings.broker_url == SECRET_VALUES["broker-url"]
        assert settings.state_url == SECRET_VALUES["state-url"]
        assert settings.registry_config is not None
        token = settings.webhook_token
        assert (token and token.get_secret_value()) == (
            SECRET_VALUES["webhook-token"] if name == "webhook" else None
        ), f"{name}: the token goes to the receiver alone"
        assert bool(settings.flower_password and settings.flower_user) is (name == "flower")
        # A stopping worker lets its tasks run WARMER_SHUTDOWN_GRACE, then requeues them: the
        # kubelet's SIGKILL comes later. The receiver drains what it accepted in its own 5 s.
        stop = pod["spec"].get("terminationGracePeriodSeconds", 30)
        grace = {"worker": settings.shutdown_grace, "webhook": GRACEFUL_SHUTDOWN_SECONDS}
        assert stop >= grace.get(name, 0) + 10, f"{name} is killed before it stops"
        _check_storage(variant, pod["spec"], container, settings)


def _check_storage(variant: str, spec: Resource, container: Resource, settings: Settings) -> None:
    """The workers and the receiver (its GET /check) read the storage: on the filesystem, the
    registry's claim mounted read-only where the registry's config.yml says; on S3, with the
    keys from the Secret. Beat and Flower never read it."""
    storage = settings.storage
    assert storage is not None
    claims = [v for v in spec["volumes"] if "persistentVolumeClaim" in v]
    names = {e["name"] for e in container.get("env", [])}
    keys = names & {"REGISTRY_STORAGE_S3_ACCESSKEY_FILE", "REGISTRY_STORAGE_S3_SECRETKEY_FILE"}
    if container["name"] not in ("worker", "webhook"):
        assert (claims, keys) == ([], set()), f"{container['name']} never reads the storage"
    elif variant.startswith("filesystem"):
        (claim,) = claims
        assert claim["persistentVolumeClaim"]["readOnly"] is True
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == claim["name"]]
        assert (storage.driver, storage.root) == ("filesystem", mount["mountPath"])
        assert mount["readOnly"] is True
    else:
        assert (storage.driver, claims, len(keys)) == ("s3", [], 2)


@pytest.mark.parametrize("variant", VARIANTS)
def test_ports_and_probes_are_the_receivers_and_flowers(
    rendered: dict[str, list[Resource]], variant: str
) -> None:
    flower = [p for p in FLOWER_ROUTES if re.fullmatch(p, "/healthcheck")]
    paths = {"webhook": RECEIVER_ROUTES, "flower": flower}
    services = _of(rendered[variant], "Service").values()
    for pod, container in _containers(rendered[variant]):
        name, args = container["name"], container["args"]
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        if name not in paths:
            assert not ports, f"{name} listens on nothing"
            continue
        assert _option(args, "--address" if name == "flower" else "--host") == "0.0.0.0"
        assert ports == {"http": int(str(_option(args, "--port")))}, name
        probes = {p: container[p]["httpGet"] for p in ("livenessProbe", "readinessProbe")}
        for probe in probes.values():
            assert probe["port"] in ports
            assert any(re.fullmatch(p, probe["path"]) for p in paths[name]), probe["path"]
        if name == "webhook":
            assert [p["path"] for p in probes.values()] == ["/healthz", "/readyz"]
        labels = pod["metadata"]["labels"]
        (service,) = [s for s in services if _selects(s["spec"]["selector"], labels)]
        assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_pods_run_as_the_images_user_on_a_read_only_root(
    rendered: dict[str, list[Resource]], variant: str
) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    ((uid, user),) = re.findall(r"useradd .*--uid (\d+) .*?(\w+)$", dockerfile, re.M)
    assert re.search(rf"^USER {user}$", dockerfile, re.M)
    image = yaml.safe_load(COMPOSE.read_text())["x-warmer"]["image"]  # compose's, its version
    for pod, container in _containers(rendered[variant]):
        spec, context = pod["spec"], container["securityContext"]
        # A named USER cannot be checked as non-root by the kubelet: the number is given.
        assert spec["securityContext"]["runAsUser"] == int(uid)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["enableServiceLinks"] is False  # no WARMER_WEBHOOK_PORT=tcp://... variables
        assert spec["automountServiceAccountToken"] is False
        assert container["image"] == image
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        assert container["resources"]["requests"]["memory"]
        assert container["resources"]["limits"]["memory"]
        # What the processes write goes to an emptyDir: temporary files (the worker's pool
        # needs a temporary directory) in /tmp, beat's schedule where --schedule puts it.
        volumes = {v["name"]: v for v in spec["volumes"]}
        writable = {
            m["mountPath"]
            for m in container["volumeMounts"]
            if not m.get("readOnly") and "emptyDir" in volumes[m["name"]]
        }
        assert "/tmp" in writable, container["name"]
        if container["name"] == "beat":
            assert str(Path(str(_option(container["args"], "--schedule"))).parent) in writable
        for mount in container["volumeMounts"]:
            assert mount["mountPath"] in writable or mount["readOnly"] is True, mount


@pytest.mark.parametrize("variant", VARIANTS)
def test_one_beat_and_budgets_that_let_drains_go_on(
    rendered: dict[str, list[Resource]], variant: str
) -> None:
    deployments = _of(rendered[variant], "Deployment")
    beat = deployments["warmer-beat"]["spec"]
    assert (beat["replicas"], beat["strategy"]) == (1, {"type": "Recreate"})
    # Each budget guards a Deployment's pods (never beat's) and lets a drain go on.
    labels = {n: d["spec"]["template"]["metadata"]["labels"] for n, d in deployments.items()}
    for budget in _of(rendered[variant], "PodDisruptionBudget").values():
        selector = budget["spec"]["selector"]["matchLabels"]
        (guarded,) = [n for n, pod_labels in labels.items() if _selects(selector, pod_labels)]
        assert guarded in ("warmer-webhook", "warmer-worker")
        assert deployments[guarded]["spec"]["replicas"] > budget["spec"].get("minAvailable", 0)
        assert budget["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_the_servicemonitor_scrapes_the_receivers_metrics(
    rendered: dict[str, list[Resource]],
) -> None:
    resources = rendered["filesystem+components"]
    (monitor,) = _of(resources, "ServiceMonitor").values()
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    spec = monitor["spec"]
    assert set(spec) <= {"selector", "endpoints", "namespaceSelector", "jobLabel"}
    services = _of(resources, "Service")
    selects = [
        n
        for n, s in services.items()
        if _selects(spec["selector"]["matchLabels"], s["metadata"]["labels"])
    ]
    assert selects == ["warmer-webhook"]
    service = services["warmer-webhook"]
    for endpoint in spec["endpoints"]:
        assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "scheme"}
        assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
        assert endpoint["path"] == "/metrics"
        assert endpoint["path"] in RECEIVER_ROUTES


def test_the_docs_give_the_commands_and_every_secret_key(
    rendered: dict[str, list[Resource]],
) -> None:
    readme = (ROOT / "README.md").read_text()
    deployment = (ROOT / "docs/deployment.md").read_text()
    for overlay in ("filesystem", "s3"):
        assert f"kubectl apply -k deploy/kubernetes/overlays/{overlay}" in readme
    keys = set()
    for variant in VARIANTS:
        for pod, container in _containers(rendered[variant]):
            for volume in pod["spec"]["volumes"]:
                keys |= {i["key"] for i in volume.get("secret", {}).get("items", [])}
            for item in container.get("env", []):
                keys |= {item.get("valueFrom", {}).get("secretKeyRef", {}).get("key")} - {None}
    assert keys == set(SECRET_VALUES)
    for key in keys:
        assert f"`{key}`" in deployment, f"docs/deployment.md does not name the Secret's {key}"
