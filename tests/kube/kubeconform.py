"""kubeconform's strict schemas for the pinned Kubernetes version, made from the OpenAPI v2
document the test cluster's own API server serves (no download: the machine reaches no
schema registry).

Hand-written rather than the `openapi2jsonschema` tool kubeconform documents: its releases
pin pyyaml<6 and click<8, which this project cannot install beside its own pyyaml 6. It does
the same steps (kubeconform's layout, IntOrString and Quantity as unions, strict objects).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

UNIONS = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {"oneOf": [{"type": "string"},
                                                                  {"type": "integer"}]},
    # Kubernetes tooling accepts numbers for quantities (`cpu: 1`), as the API server does.
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {"oneOf": [{"type": "string"},
                                                                {"type": "number"}]},
}


def _strict(node):
    """Every object schema with properties refuses others (what `kubectl --validate` does)."""
    if isinstance(node, dict):
        if "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            _strict(value)
    elif isinstance(node, list):
        for value in node:
            _strict(value)
    return node


def _refs(node):
    if isinstance(node, dict):
        return {k: ("_definitions.json" + v if k == "$ref" and v.startswith("#/") else _refs(v))
                for k, v in node.items()}
    if isinstance(node, list):
        return [_refs(v) for v in node]
    return node


def write_schemas(openapi_v2: dict, folder: Path) -> Path:
    """<kind>-<group's first label>-<version>.json per served kind (core: <kind>-<version>),
    and the shared _definitions.json they refer to."""
    folder.mkdir(parents=True, exist_ok=True)
    definitions = {**openapi_v2["definitions"], **UNIONS}
    _strict(definitions)
    (folder / "_definitions.json").write_text(json.dumps({"definitions": definitions}))
    for schema in definitions.values():
        for gvk in schema.get("x-kubernetes-group-version-kind") or []:
            group, version, kind = gvk["group"], gvk["version"], gvk["kind"]
            api_version = f"{group}/{version}" if group else version
            one = _refs(schema)  # a new tree: each kind edits its own copy
            props = one.setdefault("properties", {})
            if "kind" in props:
                props["kind"] = {**props["kind"], "enum": [kind]}
            if "apiVersion" in props:
                props["apiVersion"] = {**props["apiVersion"], "enum": [api_version]}
            one["additionalProperties"] = False
            suffix = f"-{group.split('.')[0]}-{version}" if group else f"-{version}"
            (folder / f"{kind.lower()}{suffix}.json").write_text(json.dumps(one))
    return folder


def validate(kubeconform: Path, schemas: Path, manifests: str,
             skip: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """kubeconform -strict over `manifests`; every kind must have a schema unless skipped."""
    args = [str(kubeconform), "-strict", "-summary", "-schema-location",
            f"{schemas}/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json"]
    if skip:
        args += ["-skip", ",".join(skip)]
    return subprocess.run([*args, "-"], input=manifests, capture_output=True, text=True)
