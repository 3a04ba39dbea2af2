#!/usr/bin/env python3
"""Validates the Kubernetes manifests under deploy/ offline.

Every document of every *.yaml file (schemas/ aside) is checked:
  * built-in kinds (Deployment, Service, ConfigMap, RBAC, ...) against the Kubernetes OpenAPI
    schemas bundled in the `kubernetes-validate` package, strictly (unknown fields are errors,
    as with `kubectl apply --validate=strict`), for each version in KUBERNETES_VERSIONS;
  * InferencePool, Gateway and HTTPRoute against the JSON schemas in schemas/ (see
    schemas/SOURCE), and against upstream CRD files too when --crds names a folder of them;
  * a kind with no schema at all is an error, not a warning;
  * the EndpointPickerConfig inside a ConfigMap, and the references between the manifests
    (selectors, ports, names, probes, grace period against preStop + --drain-timeout).

Usage: validate.py [--crds DIR]... [PATH]...   (PATH: files or folders; default: this folder)
Exit status: 0 valid, 1 invalid, 3 the validator's Python packages are missing.
"""

import argparse
import json
import pathlib
import re
import sys

MISSING = 3
try:
    import jsonschema
    import kubernetes_validate
    import yaml
except ImportError as e:  # the clients venv of `cargo xtask clients` has them
    print(f"validate.py: missing Python package: {e.name} (install kubernetes-validate, "
          "e.g. with `cargo xtask clients`)", file=sys.stderr)
    sys.exit(MISSING)

HERE = pathlib.Path(__file__).resolve().parent
# The oldest Kubernetes the manifests claim (preStop `sleep` is on by default since 1.30) and
# the newest that kubernetes-validate bundles.
KUBERNETES_VERSIONS = ["1.30", "1.37"]
EPP_CONFIG_API = "llm-d.ai/v1alpha1"


class Problems:
    def __init__(self):
        self.items = []

    def add(self, where, message):
        self.items.append(f"{where}: {message}")


def strict(schema):
    """A CRD's openAPIV3Schema with unknown fields forbidden, as the API server's strict field
    validation does (objects that list properties and allow nothing else)."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def load_schemas(crd_dirs):
    """{(apiVersion, kind): [(name, schema)]}: schemas/*.schema.json, then every served version
    of every CRD in crd_dirs."""
    found = {}
    for path in sorted((HERE / "schemas").glob("*.schema.json")):
        schema = json.loads(path.read_text())
        key = (schema["properties"]["apiVersion"]["const"], schema["properties"]["kind"]["const"])
        found.setdefault(key, []).append((f"schemas/{path.name}", schema))
    for d in crd_dirs:
        for path in sorted(pathlib.Path(d).glob("*.y*ml")):
            for crd in yaml.safe_load_all(path.read_text()):
                if not crd or crd.get("kind") != "CustomResourceDefinition":
                    continue
                spec = crd["spec"]
                for v in spec["versions"]:
                    schema = strict(v["schema"]["openAPIV3Schema"])
                    # metadata is left open by CRDs; the name at least must be there.
                    schema.setdefault("required", []).append("metadata")
                    key = (f"{spec['group']}/{v['name']}", spec["names"]["kind"])
                    found.setdefault(key, []).append((str(path), schema))
    return found


def documents(paths, problems):
    """(file, index, document) for every non-empty YAML document under paths; a missing path or
    a file that is not YAML is a problem."""
    files = []
    for p in map(pathlib.Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*.y*ml") if "schemas" not in f.relative_to(p).parts)
        elif p.is_file():
            files.append(p)
        else:
            problems.add(str(p), "no such file or folder")
    for f in files:
        try:
            docs = list(yaml.safe_load_all(f.read_text()))
        except (OSError, yaml.YAMLError) as e:
            problems.add(str(f), f"cannot be read as YAML: {e}")
            continue
        for i, doc in enumerate(docs):
            if doc is not None:
                yield f, i, doc


def describe(doc):
    return f"{doc.get('kind', '?')}/{(doc.get('metadata') or {}).get('name', '?')}"


def check_schema(doc, where, schemas, problems):
    """Returns the names of the schemas it checked against, or None."""
    if not isinstance(doc, dict) or not doc.get("apiVersion") or not doc.get("kind"):
        problems.add(where, "not a Kubernetes object (no apiVersion or kind)")
        return None
    key = (doc["apiVersion"], doc["kind"])
    if key in schemas:
        for name, schema in schemas[key]:
            for e in sorted(jsonschema.Draft202012Validator(schema).iter_errors(doc), key=str):
                path = ".".join(str(p) for p in e.absolute_path) or "(top)"
                problems.add(where, f"{path}: {e.message} (against {name})")
        return [name for name, _ in schemas[key]]
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            problems.add(where, f"no schema for {doc['kind']} {doc['apiVersion']} "
                                f"(Kubernetes {version}, nor in schemas/)")
            return None
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path) or "(top)"
            problems.add(where, f"{path}: {e.message} (Kubernetes {version})")
    return ["kubernetes"]


def by_kind(docs, kind):
    return [(w, d) for w, d in docs if isinstance(d, dict) and d.get("kind") == kind]


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def arg_value(args, flag):
    """The value of --flag=V or --flag V in a container's args, or None."""
    for i, a in enumerate(args):
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
        if a == flag and i + 1 < len(args):
            return args[i + 1]
    return None


def check_pods(docs, problems):
    """Probes name existing ports; a ferrite container probes /health and /ready and its pod's
    grace period outlasts preStop + --drain-timeout."""
    for where, d in by_kind(docs, "Deployment"):
        pod = d.get("spec", {}).get("template", {}).get("spec", {})
        for c in pod.get("containers", []):
            here = f"{where} container {c.get('name')}"
            ports = {p.get("name") for p in c.get("ports", [])} | {p.get("containerPort") for p in c.get("ports", [])}
            probes = {k: c[k] for k in ("startupProbe", "livenessProbe", "readinessProbe") if k in c}
            for kind, probe in probes.items():
                port = (probe.get("httpGet") or probe.get("grpc") or probe.get("tcpSocket") or {}).get("port")
                if port is not None and port not in ports:
                    problems.add(here, f"{kind} port {port!r} is not a port of the container")
            args = [str(a) for a in c.get("args", [])]
            if not args or args[0] != "serve":
                continue
            paths = {k: (p.get("httpGet") or {}).get("path") for k, p in probes.items()}
            for kind, want in (("livenessProbe", "/health"), ("readinessProbe", "/ready")):
                if paths.get(kind) != want:
                    problems.add(here, f"{kind} must GET {want}, not {paths.get(kind)!r}")
            if "startupProbe" not in probes:
                problems.add(here, "no startupProbe (model loading would race the liveness probe)")
            drain = arg_value(args, "--drain-timeout")
            pre_stop = ((c.get("lifecycle") or {}).get("preStop") or {}).get("sleep", {}).get("seconds", 0)
            grace = pod.get("terminationGracePeriodSeconds", 30)
            if drain is None:
                problems.add(here, "`ferrite serve` without --drain-timeout")
            elif grace <= pre_stop + int(drain):
                problems.add(here, f"terminationGracePeriodSeconds {grace} must exceed preStop sleep "
                                   f"{pre_stop} + --drain-timeout {drain}")


def pod_templates(docs):
    return [(where, d["spec"]["template"]) for where, d in by_kind(docs, "Deployment")]


def check_references(docs, problems):
    """Selectors select a pod template; ports and names referred to exist."""
    templates = pod_templates(docs)

    def matching(selector):
        return [t for _, t in templates if selects(selector, t.get("metadata", {}).get("labels", {}))]

    def container_ports(pods):
        return {p.get(k) for t in pods for c in t["spec"].get("containers", []) for p in c.get("ports", [])
                for k in ("name", "containerPort")}

    services = {d["metadata"]["name"]: d for _, d in by_kind(docs, "Service")}
    for where, svc in by_kind(docs, "Service"):
        pods = matching(svc["spec"].get("selector"))
        if not pods:
            problems.add(where, "its selector matches no pod template in these manifests")
        for p in svc["spec"].get("ports", []):
            if pods and p.get("targetPort", p.get("port")) not in container_ports(pods):
                problems.add(where, f"targetPort {p.get('targetPort')!r} is no port of the selected pods")
    pools = {d["metadata"]["name"] for _, d in by_kind(docs, "InferencePool")}
    for where, pool in by_kind(docs, "InferencePool"):
        spec = pool.get("spec", {})
        pods = matching(spec.get("selector", {}).get("matchLabels"))
        if not pods:
            problems.add(where, "its selector matches no pod template in these manifests")
        for p in spec.get("targetPorts", []):
            if pods and p.get("number") not in container_ports(pods):
                problems.add(where, f"targetPort {p.get('number')} is no containerPort of the selected pods")
        epp = spec.get("endpointPickerRef", {})
        if epp.get("kind", "Service") == "Service":
            svc = services.get(epp.get("name"))
            if svc is None:
                problems.add(where, f"endpointPickerRef names no Service here: {epp.get('name')!r}")
            elif epp.get("port", {}).get("number") not in [p.get("port") for p in svc["spec"].get("ports", [])]:
                problems.add(where, f"endpointPickerRef port is not a port of Service {epp.get('name')}")
    gateways = {d["metadata"]["name"] for _, d in by_kind(docs, "Gateway")}
    for where, route in by_kind(docs, "HTTPRoute"):
        for ref in route.get("spec", {}).get("parentRefs", []):
            if ref.get("kind", "Gateway") == "Gateway" and ref.get("name") not in gateways:
                problems.add(where, f"parentRef names no Gateway here: {ref.get('name')!r}")
        for rule in route.get("spec", {}).get("rules", []):
            for ref in rule.get("backendRefs", []):
                if ref.get("kind") == "InferencePool" and ref.get("name") not in pools:
                    problems.add(where, f"backendRef names no InferencePool here: {ref.get('name')!r}")


def check_epp_config(docs, problems):
    """The endpoint picker's config in a ConfigMap: its kind and version, the plugins that the
    scheduling profiles refer to, and a metric spec for each engine it names."""
    engines_on_pods = {t.get("metadata", {}).get("labels", {}).get("llm-d.ai/engine-type")
                       for _, t in pod_templates(docs)} - {None}
    for where, cm in by_kind(docs, "ConfigMap"):
        for key, text in (cm.get("data") or {}).items():
            if "EndpointPickerConfig" not in text:
                continue
            here = f"{where} data.{key}"
            try:
                cfg = yaml.safe_load(text)
            except yaml.YAMLError as e:
                problems.add(here, f"not YAML: {e}")
                continue
            if cfg.get("apiVersion") != EPP_CONFIG_API or cfg.get("kind") != "EndpointPickerConfig":
                problems.add(here, f"apiVersion/kind must be {EPP_CONFIG_API} EndpointPickerConfig")
            plugins = cfg.get("plugins") or []
            names = {p.get("name") or p.get("type") for p in plugins}
            for profile in cfg.get("schedulingProfiles") or []:
                for ref in profile.get("plugins") or []:
                    if ref.get("pluginRef") not in names:
                        problems.add(here, f"profile {profile.get('name')} refers to no plugin: {ref.get('pluginRef')!r}")
            for p in plugins:
                if p.get("type") != "core-metrics-extractor":
                    continue
                params = p.get("parameters") or {}
                configs = {e.get("name"): e for e in params.get("engineConfigs") or []}
                for engine in engines_on_pods | {params.get("defaultEngine")} - {None}:
                    if engine not in configs:
                        problems.add(here, f"no engineConfigs entry for engine {engine!r}")
                for name, e in configs.items():
                    for spec in ("queuedRequestsSpec", "runningRequestsSpec", "kvUsageSpec"):
                        if not re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})?", e.get(spec) or ""):
                            problems.add(here, f"engine {name}: {spec} is not a metric selector: {e.get(spec)!r}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crds", action="append", default=[], help="a folder of upstream CRD files")
    ap.add_argument("paths", nargs="*", default=[str(HERE)])
    a = ap.parse_args()
    schemas = load_schemas(a.crds)
    problems = Problems()
    docs, used, by_kubernetes = [], set(), 0
    for f, i, doc in documents(a.paths, problems):
        where = f"{f}#{i} {describe(doc) if isinstance(doc, dict) else '?'}"
        against = check_schema(doc, where, schemas, problems)
        if against:
            by_kubernetes += against == ["kubernetes"]
            used.update(a for a in against if a != "kubernetes")
            docs.append((where, doc))
    if not docs and not problems.items:
        problems.add(" ".join(a.paths), "no manifests found")
    check_pods(docs, problems)
    check_references(docs, problems)
    check_epp_config(docs, problems)
    for p in problems.items:
        print(f"ERROR {p}")
    verdict = "INVALID" if problems.items else "ok"
    by_crd = len(docs) - by_kubernetes
    crds = f", {by_crd} against {', '.join(sorted(used))}" if by_crd else ""
    print(f"{verdict}: {len(docs)} manifests ({by_kubernetes} against Kubernetes "
          f"{' and '.join(KUBERNETES_VERSIONS)}{crds}), {len(problems.items)} problem(s)")
    return 1 if problems.items else 0


if __name__ == "__main__":
    sys.exit(main())
