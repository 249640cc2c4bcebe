#!/usr/bin/env python3
"""Validates rendered manifests: kustomize output and Helm chart renders (multi-document YAML files
given as arguments).

- Built-in kinds: kubernetes-validate (PyPI) schemas of one Kubernetes version, strict (unknown
  fields rejected).
- monitoring.coreos.com kinds are written to a JSON file for tests/ops/validate_crds.mjs, which checks
  them against the prometheus-operator CRD schemas (npm @kubernetes-models/prometheus-operator).
- Dashboard ConfigMaps: every data value parses as JSON and equals the dashboard file it came from;
  PrometheusRules: their groups equal the rule file they came from (annotation
  slurm-gpu-exporter/source). A file with any of them must have all of them.
- Pod specs: security settings this project promises (docs/deploy.md).

Usage: validate_manifests.py --k8s-version 1.32.0 --crd-out FILE rendered1.yaml [rendered2.yaml ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
failures = 0


def report(ok: bool, name: str, detail: str = "") -> None:
    global failures
    if not ok:
        failures += 1
    print(("PASS" if ok else "FAIL") + f"  {name}" + (f": {detail}" if detail else ""))


def check_pod_security(doc: dict) -> list[str]:
    problems = []
    spec = doc["spec"]["template"]["spec"]
    name = doc["metadata"]["name"]
    if spec.get("automountServiceAccountToken") is not False:
        problems.append(f"{name}: service account token mounted")
    for c in spec.get("containers", []):
        sc = c.get("securityContext", {})
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}/{c['name']}: root filesystem not read-only")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}/{c['name']}: privilege escalation allowed")
        if sc.get("privileged"):
            problems.append(f"{name}/{c['name']}: privileged")
        if "ALL" not in sc.get("capabilities", {}).get("drop", []):
            problems.append(f"{name}/{c['name']}: capabilities not dropped")
        if not c.get("resources", {}).get("requests"):
            problems.append(f"{name}/{c['name']}: no resource requests")
    if doc["kind"] == "DaemonSet":
        if not spec.get("hostPID"):
            problems.append(f"{name}: hostPID expected for the node agent")
        for v in spec.get("volumes", []):
            hp = v.get("hostPath", {}).get("path")
            mounts = [m for c in spec["containers"] for m in c.get("volumeMounts", []) if m["name"] == v["name"]]
            if hp and not all(m.get("readOnly") for m in mounts):
                problems.append(f"{name}: hostPath {hp} mounted writable")
        tol = spec.get("tolerations", [])
        if not any(t.get("key") == "slinky.io/usage" and t.get("value") == "gpu-task" for t in tol):
            problems.append(f"{name}: no toleration for slinky.io/usage=gpu-task")
    else:
        psc = spec.get("securityContext", {})
        if psc.get("runAsNonRoot") is not True:
            problems.append(f"{name}: not runAsNonRoot")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--k8s-version", required=True)
    ap.add_argument("--crd-out", required=True)
    ap.add_argument("files", nargs="+")
    a = ap.parse_args()

    crd_docs = []
    for f in a.files:
        docs = [d for d in yaml.safe_load_all(Path(f).read_text()) if d]
        errors, kinds = [], {}
        for d in docs:
            kind, name = d.get("kind"), d.get("metadata", {}).get("name")
            kinds[kind] = kinds.get(kind, 0) + 1
            where = f"{kind}/{name}"
            if d.get("apiVersion", "").startswith("monitoring.coreos.com/"):
                crd_docs.append({"source": f, "doc": d})
                continue
            try:
                kubernetes_validate.validate(d, a.k8s_version, strict=True)
            except kubernetes_validate.ValidationError as e:
                errors.append(f"{where}: {e.message} at {'/'.join(str(p) for p in e.path)}")
            except Exception as e:  # schema not found, unsupported version, ...
                errors.append(f"{where}: {type(e).__name__}: {e}")
        report(not errors, f"{f}: {len(docs)} objects valid for Kubernetes {a.k8s_version} (strict) "
                           f"[{', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}]",
               "\n    " + "\n    ".join(errors) if errors else "")

        # Generated content round-trips to the source files.
        problems = []
        dash_files = {p.name: json.loads(p.read_text()) for p in (ROOT / "dashboards").glob("*.json")}
        rule_files = {p.stem: yaml.safe_load(p.read_text()) for p in (ROOT / "alerts").glob("*.yaml")}
        seen_dash, seen_rules = set(), set()
        for d in docs:
            md = d.get("metadata", {})
            if d.get("kind") == "ConfigMap" and md.get("labels", {}).get("grafana_dashboard") == "1":
                for key, val in d.get("data", {}).items():
                    seen_dash.add(key)
                    if key not in dash_files:
                        problems.append(f"ConfigMap {md['name']}: {key} is no file in dashboards/")
                    elif json.loads(val) != dash_files[key]:
                        problems.append(f"ConfigMap {md['name']}: {key} differs from dashboards/{key}")
            if d.get("kind") == "PrometheusRule":
                source = md.get("annotations", {}).get("slurm-gpu-exporter/source", "")
                stem = Path(source).stem
                seen_rules.add(stem)
                if not source.startswith("alerts/") or stem not in rule_files or d["spec"] != rule_files[stem]:
                    problems.append(f"PrometheusRule {md['name']} differs from {source or 'its alerts/ file'}")
            if d.get("kind") in ("Deployment", "StatefulSet", "DaemonSet"):
                problems += check_pod_security(d)
        if seen_dash and set(dash_files) - seen_dash:
            problems.append(f"dashboards without ConfigMap: {sorted(set(dash_files) - seen_dash)}")
        if seen_rules and set(rule_files) - seen_rules:
            problems.append(f"rule files without PrometheusRule: {sorted(set(rule_files) - seen_rules)}")
        report(not problems, f"{f}: dashboards, rules and pod security as intended",
               "\n    " + "\n    ".join(problems) if problems else "")

    Path(a.crd_out).write_text(json.dumps(crd_docs))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
