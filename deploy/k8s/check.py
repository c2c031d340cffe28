"""`make k8s-check`: render every overlay with kustomize and validate the result offline.

1. Kubernetes schemas: every built-in object against the API schemas that
   `kubernetes-validate` ships (strict: an unknown field is an error), for the oldest and the
   newest Kubernetes release we support.
2. Custom resources (Strimzi, CloudNativePG, KEDA) against the `openAPIV3Schema` of the CRDs
   vendored in deploy/k8s/crds (see SOURCES.md there). Strict as well: the API server would
   silently drop an unknown field, so a misspelt one is reported here instead.
3. Secrets are mounted, never shipped: no overlay may render a Secret.
4. Security scan: checkov over every rendered overlay and over the Containerfile, with the
   exceptions (each justified) in deploy/k8s/checkov.yaml.

Runs with the tool virtualenv of the Makefile (.cache/tools), not with the project's.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

K8S_DIR = Path(__file__).resolve().parent
REPO = K8S_DIR.parent.parent
OVERLAYS = K8S_DIR / "overlays"
CRDS = K8S_DIR / "crds"
CHECKOV_CONFIG = K8S_DIR / "checkov.yaml"
# Oldest and newest Kubernetes minor release the manifests must be valid for.
KUBERNETES_VERSIONS = ("1.31.0", "1.37.0")


def render(kustomize: str, overlay: Path) -> list[dict]:
    result = subprocess.run([kustomize, "build", str(overlay)], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"k8s-check: kustomize build {overlay.relative_to(REPO)} failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _structural_to_jsonschema(node):
    """A CRD's structural schema as JSON Schema, closed where Kubernetes would prune."""
    if isinstance(node, list):
        return [_structural_to_jsonschema(item) for item in node]
    if not isinstance(node, dict):
        return node
    schema = {
        key: _structural_to_jsonschema(value)
        for key, value in node.items()
        if not key.startswith("x-kubernetes-") and key != "nullable"
    }
    if node.get("nullable") and "type" in schema:
        schema["type"] = [schema["type"], "null"]
    if node.get("x-kubernetes-int-or-string"):
        schema.pop("type", None)
        schema.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    closed = (
        "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    )
    if closed:
        schema["additionalProperties"] = False
    return schema


def load_crd_schemas() -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> JSON Schema of that custom resource, from the vendored CRDs."""
    schemas = {}
    for path in sorted(CRDS.rglob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if not version.get("served", True):
                    continue
                schema = _structural_to_jsonschema(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
                # apiVersion/kind/metadata are the API server's: checked here, not by the CRD.
                schema.setdefault("properties", {})["metadata"] = {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": {"type": "string"}},
                }
                schema["additionalProperties"] = False
                schemas[(f"{group}/{version['name']}", kind)] = schema
    return schemas


def describe(doc: dict) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def validate(docs: list[dict], crd_schemas: dict) -> tuple[list[str], dict[str, int]]:
    problems: list[str] = []
    counts = {"kubernetes": 0, "custom": 0}
    for doc in docs:
        key = (doc.get("apiVersion"), doc.get("kind"))
        if doc.get("kind") == "Secret":
            problems.append(f"{describe(doc)}: a Secret in the manifests; mount it from the cluster instead")
        if key in crd_schemas:
            validator = jsonschema.Draft7Validator(crd_schemas[key])
            errors = sorted(validator.iter_errors(doc), key=lambda error: list(error.absolute_path))
            problems += [
                f"{describe(doc)}: {'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors
            ]
            counts["custom"] += 1
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                problems.append(
                    f"{describe(doc)}: {doc.get('apiVersion')} is neither a Kubernetes {version} "
                    "API nor a vendored CRD (deploy/k8s/crds)"
                )
            except kubernetes_validate.ValidationError as error:
                where = ".".join(map(str, error.path)) or "(root)"
                problems.append(f"{describe(doc)}: Kubernetes {version}: {where}: {error.message}")
        counts["kubernetes"] += 1
    return problems, counts


def checkov(checkov_bin: str, target: Path, framework: str) -> tuple[bool, str]:
    result = subprocess.run(
        [
            checkov_bin,
            "--config-file",
            str(CHECKOV_CONFIG),
            "--framework",
            framework,
            "--file",
            str(target),
            "--output",
            "json",
            "--quiet",
        ],
        capture_output=True,
        text=True,
    )
    try:
        reports = json.loads(result.stdout or "[]")
    except json.JSONDecodeError:
        return False, f"checkov did not report (exit {result.returncode}):\n{result.stderr[-3000:]}"
    reports = reports if isinstance(reports, list) else [reports]
    passed = failed = skipped = 0
    lines = []
    for report in reports:
        summary = report.get("summary", {})
        passed += summary.get("passed", 0)
        failed += summary.get("failed", 0)
        skipped += summary.get("skipped", 0)
        lines.extend(
            f"  FAILED {check['check_id']} {check['check_name']}: {check.get('resource')}"
            for check in report.get("results", {}).get("failed_checks", [])
        )
    ok = failed == 0 and result.returncode == 0
    counts = f"checkov {framework}: {passed} passed, {failed} failed, {skipped} skipped"
    return ok, "\n".join([f"{counts} (each justified where it is skipped)", *lines])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kustomize", required=True, help="path of the kustomize binary")
    parser.add_argument("--checkov", default=str(Path(sys.executable).with_name("checkov")))
    parser.add_argument("--out", default=str(REPO / ".cache" / "k8s-check"), help="where rendered overlays go")
    options = parser.parse_args(argv)

    out = Path(options.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    crd_schemas = load_crd_schemas()
    failures = 0
    overlays = sorted(path for path in OVERLAYS.iterdir() if (path / "kustomization.yaml").exists())
    for overlay in overlays:
        docs = render(options.kustomize, overlay)
        rendered = out / f"{overlay.name}.yaml"
        rendered.write_text(yaml.safe_dump_all(docs, sort_keys=False), encoding="utf-8")
        problems, counts = validate(docs, crd_schemas)
        print(
            f"{overlay.name}: {len(docs)} objects rendered; {counts['kubernetes']} checked against "
            f"Kubernetes {' and '.join(KUBERNETES_VERSIONS)}, {counts['custom']} against operator CRDs: "
            f"{len(problems)} problems"
        )
        for problem in problems:
            print(f"  {problem}")
        ok, report = checkov(options.checkov, rendered, "kubernetes")
        print(f"{overlay.name}: {report}")
        failures += len(problems) + (not ok)

    # checkov knows a Dockerfile by its name; the Containerfile is one.
    dockerfile = out / "Dockerfile"
    shutil.copyfile(REPO / "Containerfile", dockerfile)
    ok, report = checkov(options.checkov, dockerfile, "dockerfile")
    print(f"Containerfile: {report}")
    failures += not ok

    print("k8s-check: " + ("passed" if failures == 0 else f"FAILED ({failures})"))
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
