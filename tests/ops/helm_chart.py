#!/usr/bin/env python3
"""Lints and renders the Helm chart deploy/helm/slurm-gpu-exporter with Helm itself (helm-python-sdk:
Helm v4 as a library), and checks what the chart promises (docs/deploy.md).

For each value set (default, slinky-eks, bare, plus `options` and `minimal`, which turn every
switch the other way):
- `helm lint --strict` against the Kubernetes version: no error, no warning;
- render (release slurm-gpu-exporter, namespace monitoring) into OUT_DIR/helm-<set>.yaml for
  validate_manifests.py (Kubernetes and prometheus-operator schemas) and run_manifests.py (the
  real binary with each container's arguments);
- chart semantics: one cluster scraper replica with its usage state file on a persistent volume,
  the JWT mounted from a Secret volume (never an environment variable), `:port` listen addresses
  matching the container ports, the Slinky scheduling, the job-mapping mount, monitor labels.
Also: values.schema.json rejects bad values, and `--overlay FILE` (the rendered kustomize overlay
slinky-eks) holds the same objects as the chart with values-slinky-eks.yaml.

Usage: helm_chart.py --k8s-version 1.32.0 --out-dir DIR [--overlay rendered-overlay.yaml]
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from pathlib import Path

import helm_python
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy"))
import generate  # noqa: E402  (deploy/generate.py: the same render as the kustomize base)

CHART = generate.CHART
failures = 0


def report(ok: bool, name: str, problems: list[str] | None = None) -> None:
    global failures
    if not ok:
        failures += 1
    detail = ("\n    " + "\n    ".join(problems)) if problems else ""
    print(("PASS" if ok else "FAIL") + f"  {name}" + (detail if not ok else ""))


def load(name: str) -> dict:
    return yaml.safe_load((CHART / name).read_text()) or {}


VALUE_SETS: dict[str, dict] = {
    "default": {},
    "slinky-eks": load("values-slinky-eks.yaml"),
    "bare": load("values-bare.yaml"),
    # Every optional feature on, and the non-root node agent.
    "options": {
        "clusterScraper": {
            "budgets": {"accounts": {"ai_project": {"gpu_hours": 5000}}},
            "persistence": {"existingClaim": "usage-state"},
            "extraArgs": ["--collector.fairshare=false"],
        },
        "slurmrestd": {"caConfigMap": {"name": "slurmrestd-ca"}},
        "nodeAgent": {"readProcessEnvironment": False, "runtimeClassName": "nvidia"},
        "dashboards": {"namespace": "grafana"},
    },
    # Everything optional off.
    "minimal": {
        "clusterScraper": {"persistence": {"enabled": False}},
        "slurmrestd": {"token": {"secretName": ""}},
        "nodeAgent": {"jobMappingDir": ""},
        "serviceMonitor": {"enabled": False},
        "podMonitor": {"enabled": False},
        "prometheusRule": {"enabled": False},
        "dashboards": {"enabled": False},
    },
}

# Values the schema must refuse, with the words its message must contain.
BAD_VALUES = [
    ({"clusterScraper": {"replicas": 2}}, "replicas"),
    ({"slurmrestd": {"url": "slurm-restapi.slurm:6820"}}, "url"),
    ({"nodeAgent": {"collectInterval": "ten seconds"}}, "collectInterval"),
    ({"clusterScraper": {"budgets": {"accounts": {}}}}, "budgets"),
    ({"nodeAgent": {"port": 70000}}, "port"),
    ({"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
]


def arg_value(args: list[str], flag: str) -> str | None:
    for a in args:
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def mount_for(container: dict, path: str) -> dict | None:
    best = None
    for m in container.get("volumeMounts", []):
        mp = m["mountPath"].rstrip("/")
        if (path == mp or path.startswith(mp + "/")) and (best is None or len(mp) > len(best["mountPath"])):
            best = m
    return best


def check_semantics(set_name: str, values: dict, docs: list[dict]) -> list[str]:
    merged = MERGED[set_name]
    p: list[str] = []
    by_kind: dict[str, list[dict]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    for kind in ("Deployment", "ReplicaSet", "Pod"):
        if kind in by_kind:
            p.append(f"unexpected {kind}: the cluster scraper is a StatefulSet")

    sts = by_kind.get("StatefulSet", [])
    if len(sts) != 1:
        p.append(f"{len(sts)} StatefulSets, expected the cluster scraper only")
    for s in sts:
        if s["spec"].get("replicas") != 1:
            p.append(f"StatefulSet replicas {s['spec'].get('replicas')}, must be 1 (usage counters)")
        pod = s["spec"]["template"]["spec"]
        c = pod["containers"][0]
        args = c["args"]
        state = arg_value(args, "--usage-state-file")
        if not state:
            p.append("cluster scraper without --usage-state-file")
        else:
            m = mount_for(c, state)
            vols = {v["name"]: v for v in pod.get("volumes", [])}
            claims = {t["metadata"]["name"] for t in s["spec"].get("volumeClaimTemplates", [])}
            if m is None or m.get("readOnly"):
                p.append(f"usage state file {state} is on no writable volume")
            elif merged["clusterScraper"]["persistence"]["enabled"]:
                if m["name"] not in claims and "persistentVolumeClaim" not in vols.get(m["name"], {}):
                    p.append(f"usage state volume {m['name']} is not persistent")
            elif "emptyDir" not in vols.get(m["name"], {}):
                p.append("persistence disabled but the state volume is not an emptyDir")
        token_file = arg_value(args, "--slurmrestd-token-file")
        secret = merged["slurmrestd"]["token"]["secretName"]
        if secret:
            m = token_file and mount_for(c, token_file)
            vol = m and {v["name"]: v for v in pod["volumes"]}.get(m["name"], {})
            if not m or vol.get("secret", {}).get("secretName") != secret:
                p.append(f"token file {token_file} is not on a volume of Secret {secret}")
        elif token_file:
            p.append("token file without a token Secret")
        for e in c.get("env", []):
            ref = e.get("valueFrom", {}).get("secretKeyRef", {})
            if ref and ref.get("key") == merged["slurmrestd"]["token"]["key"]:
                p.append(f"the JWT is passed in env {e['name']}: a Secret volume is needed for rotation")
        if arg_value(args, "--slurmrestd-url") != merged["slurmrestd"]["url"]:
            p.append(f"--slurmrestd-url is not {merged['slurmrestd']['url']}")
        if bool(arg_value(args, "--budgets")) != bool(merged["clusterScraper"]["budgets"]):
            p.append("--budgets does not follow clusterScraper.budgets")
    for ds in by_kind.get("DaemonSet", []):
        pod = ds["spec"]["template"]["spec"]
        c = pod["containers"][0]
        jm = merged["nodeAgent"]["jobMappingDir"]
        host_paths = {v["hostPath"]["path"]: v for v in pod["volumes"] if "hostPath" in v}
        if jm:
            v = host_paths.get(jm)
            arg = arg_value(c["args"], "--collector.jobs.mapping-dir")
            m = arg and mount_for(c, arg)
            if not v or v["hostPath"].get("type") != "DirectoryOrCreate" or not m or m["name"] != v["name"]:
                p.append(f"job-mapping dir {jm} not mounted (hostPath DirectoryOrCreate) at --collector.jobs.mapping-dir")
        elif arg_value(c["args"], "--collector.jobs.mapping-dir"):
            p.append("job-mapping dir passed though nodeAgent.jobMappingDir is empty")
        if "/sys" not in host_paths or "/proc" not in host_paths:
            p.append("node agent without hostPath /sys and /proc")
        if set_name == "slinky-eks":
            if pod.get("nodeSelector") != {"role": "slurm-static-gpu"}:
                p.append(f"Slinky nodeSelector missing: {pod.get('nodeSelector')}")
            if "affinity" in pod:
                p.append("gpuNodeAffinity: false still renders an affinity")
            tol = {(t.get("key"), t.get("value"), t.get("effect")) for t in pod.get("tolerations", [])}
            if ("slinky.io/usage", "gpu-task", "NoSchedule") not in tol:
                p.append("no toleration slinky.io/usage=gpu-task:NoSchedule")
    # Listen addresses: `:port`, the container's metrics port.
    for w in sts + by_kind.get("DaemonSet", []):
        c = w["spec"]["template"]["spec"]["containers"][0]
        listen = arg_value(c["args"], "--web.listen-address") or ""
        ports = {pt["containerPort"] for pt in c["ports"] if pt["name"] == "metrics"}
        if not listen.startswith(":") or {int(listen[1:])} != ports:
            p.append(f"{w['metadata']['name']}: --web.listen-address={listen} vs metrics port {ports}")
    # Monitoring objects follow their switches and carry their labels.
    for key, kind in (("serviceMonitor", "ServiceMonitor"), ("podMonitor", "PodMonitor"), ("prometheusRule", "PrometheusRule")):
        objs = by_kind.get(kind, [])
        if bool(objs) != merged[key]["enabled"]:
            p.append(f"{kind}: {len(objs)} rendered with {key}.enabled={merged[key]['enabled']}")
        for o in objs:
            missing = {k: v for k, v in merged[key]["labels"].items() if o["metadata"]["labels"].get(k) != v}
            if missing:
                p.append(f"{kind} {o['metadata']['name']} lacks labels {missing}")
    for o in by_kind.get("ServiceMonitor", []) + by_kind.get("PodMonitor", []):
        eps = o["spec"].get("endpoints") or o["spec"].get("podMetricsEndpoints")
        relabel = {r["targetLabel"]: r["replacement"] for r in eps[0]["relabelings"]}
        want_job = "slurm-gpu-exporter-" + ("cluster" if o["kind"] == "ServiceMonitor" else "node")
        if relabel != {"job": want_job, "cluster": merged["clusterName"]}:
            p.append(f"{o['kind']} relabelings {relabel}")
    dash = [d for d in by_kind.get("ConfigMap", []) if d["metadata"]["name"].endswith(tuple(f"-dashboard-{f.stem}" for f in (ROOT / "dashboards").glob("*.json")))]
    if bool(dash) != merged["dashboards"]["enabled"]:
        p.append(f"{len(dash)} dashboard ConfigMaps with dashboards.enabled={merged['dashboards']['enabled']}")
    for d in dash:
        if d["metadata"]["labels"].get("grafana_dashboard") != "1":
            p.append(f"{d['metadata']['name']}: no label grafana_dashboard: \"1\"")
        want_ns = merged["dashboards"]["namespace"] or "monitoring"
        if d["metadata"]["namespace"] != want_ns:
            p.append(f"{d['metadata']['name']}: namespace {d['metadata']['namespace']}, expected {want_ns}")
    helm_labels = [d["metadata"]["name"] for d in docs if "helm.sh/chart" in d["metadata"].get("labels", {})]
    if merged["helmLabels"] != (len(helm_labels) == len(docs)):
        p.append(f"helmLabels={merged['helmLabels']} but {len(helm_labels)}/{len(docs)} objects carry helm.sh/chart")
    return p


def normalized(doc: dict) -> dict:
    """An object without what differs by design between the chart and kustomize: labels,
    annotations and namespaces (Helm's own labels, kustomize's namespace transformer)."""
    d = copy.deepcopy(doc)
    for md in (d.get("metadata", {}), d.get("spec", {}).get("template", {}).get("metadata", {})):
        for k in ("labels", "annotations", "namespace"):
            md.pop(k, None)
    return d


def compare_overlay(overlay_file: Path, chart_docs: list[dict]) -> list[str]:
    overlay = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(overlay_file.read_text()) if d}
    chart = {(d["kind"], d["metadata"]["name"]): d for d in chart_docs}
    p = []
    if set(overlay) != set(chart):
        p.append(f"only in the overlay: {sorted(set(overlay) - set(chart))}; only in the chart: {sorted(set(chart) - set(overlay))}")
    for key in sorted(set(overlay) & set(chart)):
        if normalized(overlay[key]) != normalized(chart[key]):
            a, b = normalized(overlay[key]), normalized(chart[key])
            diff = [k for k in set(a.get("spec", {})) | set(b.get("spec", {})) if a.get("spec", {}).get(k) != b.get("spec", {}).get(k)]
            p.append(f"{key[0]}/{key[1]} differs (spec keys {sorted(diff)})")
        # Selection labels of the chart's values are on the overlay's objects too.
        for k, v in chart[key]["metadata"].get("labels", {}).items():
            if k == "release" and overlay[key]["metadata"].get("labels", {}).get(k) != v:
                p.append(f"{key[0]}/{key[1]}: label {k}={v} missing in the overlay")
    return p


MERGED: dict[str, dict] = {}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--k8s-version", required=True)
    ap.add_argument("--out-dir", required=True, type=Path)
    ap.add_argument("--overlay", type=Path)
    a = ap.parse_args()
    helm_python.disable_logging()
    print(f"helm-python-sdk {helm_python.__version__} (Helm {helm_python.helm_sdk_version()})")

    rendered: dict[str, list[dict]] = {}
    with helm_python.Chart.load(CHART) as chart:
        for name, values in VALUE_SETS.items():
            MERGED[name] = chart.merge_values(values)
            lint = helm_python.lint(CHART, values, strict=True, namespace=generate.NAMESPACE, kube_version=f"v{a.k8s_version}")
            bad = [f"{m['path']}: {m['error']}" for m in lint["messages"] if m["severity"] >= 2] + lint["errors"]
            report(not bad, f"helm lint --strict ({name} values, Kubernetes {a.k8s_version})", bad)
            try:
                text = generate.render_text(values)
            except helm_python.HelmError as e:
                report(False, f"helm render ({name} values)", [str(e)])
                continue
            out = a.out_dir / f"helm-{name}.yaml"
            out.write_text(text)
            docs = [d for d in yaml.safe_load_all(text) if d]
            rendered[name] = docs
            kinds: dict[str, int] = {}
            for d in docs:
                kinds[d["kind"]] = kinds.get(d["kind"], 0) + 1
            problems = check_semantics(name, values, docs)
            report(not problems, f"chart with {name} values: {len(docs)} objects [{', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}] as documented -> {out.name}", problems)

        problems = []
        for values, words in BAD_VALUES:
            try:
                chart.render(values=values, name=generate.RELEASE, namespace=generate.NAMESPACE)
                problems.append(f"accepted {values}")
            except helm_python.HelmValuesError as e:
                if words not in str(e):
                    problems.append(f"{values}: message does not name {words!r}: {e}")
        report(not problems, f"values.schema.json rejects {len(BAD_VALUES)} bad value sets, naming the key", problems)

    # The packaged chart (what `helm package` / an OCI registry serves) renders the same objects.
    with tempfile.TemporaryDirectory() as pkg_dir:
        problems = []
        try:
            archive = helm_python.package(CHART, destination=pkg_dir)
            with helm_python.Chart.load(archive) as packaged:
                got = packaged.render(values=VALUE_SETS["default"], name=generate.RELEASE, namespace=generate.NAMESPACE)
            want = [d for d in yaml.safe_load_all(generate.render_text({})) if d]
            got_docs = [d for k in sorted(got) if k.endswith(".yaml") for d in yaml.safe_load_all(got[k]) if d]
            if got_docs != want:
                problems.append("the packaged chart renders differently from the directory")
            name = Path(archive).name
        except helm_python.HelmError as e:
            problems.append(str(e))
            name = "?"
        report(not problems, f"helm package -> {name}, renders as the directory does", problems)

    if a.overlay and "slinky-eks" in rendered:
        problems = compare_overlay(a.overlay, rendered["slinky-eks"])
        report(not problems, "kustomize overlay slinky-eks = chart with values-slinky-eks.yaml (labels, namespaces aside)", problems)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
