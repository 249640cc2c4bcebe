#!/usr/bin/env python3
"""Checks for the operations files: dashboards, rules, deploy manifests.

Called by tests/ops/check.sh; each subcommand prints PASS/FAIL/WARN lines and exits non-zero on failure.
Standard library only, except `manifests` (PyYAML, from the check venv).

  opscheck.py dashboards                 structure of dashboards/*.json (variables, data source, targets)
  opscheck.py queries URL                every dashboard and rule expression parses on a live Prometheus
  opscheck.py metrics                    every metric named in a dashboard or rule is documented / recorded
  opscheck.py rules-annotations          every alert has summary and runbook, and a unit test that fires it
  opscheck.py docs                       docs/alerts.md has a section for every alert
"""

from __future__ import annotations

import glob
import json
import os
import re
import sys
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REQUIRED_VARS = ("cluster", "partition", "account", "user", "node")

# Values substituted for Grafana variables before an expression is sent to Prometheus.
GRAFANA_VARS = {
    "__rate_interval": "5m",
    "__interval": "1m",
    "__range": "1h",
    "__range_s": "3600",
    "__interval_ms": "60000",
    "job_id": "123",
}
REGEX_VAR_VALUE = ".*"

PROMQL_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or", "unless",
    "inf", "nan", "start", "end", "atan2",
}
# Metrics that Prometheus itself provides for every target.
BUILTIN_METRICS = {"up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_series_added",
                   "scrape_samples_post_metric_relabeling"}

failures = 0


def report(ok: bool | None, name: str, detail: str = "") -> None:
    global failures
    tag = "PASS" if ok else ("WARN" if ok is None else "FAIL")
    if ok is False:
        failures += 1
    print(f"{tag}  {name}" + (f": {detail}" if detail else ""))


def load_yaml_rules() -> list[tuple[str, dict]]:
    """(file, rule) for every rule in alerts/*.yaml; a tiny YAML reader is not enough, so use PyYAML
    when present and fall back to promtool-free regex extraction otherwise."""
    try:
        import yaml  # type: ignore
    except ImportError:  # pragma: no cover - check.sh always runs this with the venv
        sys.exit("PyYAML is required (run through tests/ops/check.sh)")
    out = []
    for f in sorted(glob.glob(str(ROOT / "alerts" / "*.yaml"))):
        doc = yaml.safe_load(Path(f).read_text())
        for g in doc.get("groups", []):
            for r in g.get("rules", []):
                out.append((os.path.relpath(f, ROOT), r))
    return out


def dashboards() -> list[tuple[str, dict]]:
    return [(os.path.relpath(f, ROOT), json.loads(Path(f).read_text()))
            for f in sorted(glob.glob(str(ROOT / "dashboards" / "*.json")))]


def iter_panels(d: dict):
    for p in d.get("panels", []):
        yield p
        for sub in p.get("panels", []) or []:
            yield sub


def dashboard_exprs() -> list[tuple[str, str]]:
    """(where, expr) for every panel target and query variable of every dashboard."""
    out = []
    for f, d in dashboards():
        for p in iter_panels(d):
            for t in p.get("targets", []) or []:
                if t.get("expr"):
                    out.append((f"{f} panel {p.get('id')} '{p.get('title')}' {t.get('refId')}", t["expr"]))
        for v in d.get("templating", {}).get("list", []):
            if v.get("type") == "query":
                qv = v.get("query")
                qs = qv.get("query") if isinstance(qv, dict) else qv
                out.append((f"{f} variable ${v['name']}", qs))
    return out


def rule_exprs() -> list[tuple[str, str]]:
    return [(f"{f} {r.get('alert') or r.get('record')}", r["expr"]) for f, r in load_yaml_rules()]


def substitute(expr: str) -> str:
    """Grafana variables -> concrete values; label_values(sel, label) -> sel."""
    m = re.fullmatch(r"\s*label_values\((.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*", expr, re.S)
    if m:
        expr = m.group(1)
    m = re.fullmatch(r"\s*label_values\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*", expr)
    if m:
        expr = f'{{__name__=~".+"}}'

    def repl(mm: re.Match) -> str:
        name = mm.group(1) or mm.group(2)
        name = name.split(":")[0]
        if name in GRAFANA_VARS:
            return GRAFANA_VARS[name]
        return REGEX_VAR_VALUE

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_:]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)", repl, expr)


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (no full parser: strings, label matchers, ranges and
    grouping clauses are removed, then identifiers not followed by '(' that are not keywords remain)."""
    e = substitute(expr)
    names = set(re.findall(r'__name__\s*=~?\s*"([A-Za-z_:][A-Za-z0-9_:]*)"', e))
    e = re.sub(r'"(?:[^"\\]|\\.)*"' + r"|'(?:[^'\\]|\\.)*'|`[^`]*`", '""', e)
    e = re.sub(r"\{[^{}]*\}", " ", e)
    e = re.sub(r"\[[^\[\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", r" ", e)
    for m in re.finditer(r"(?<![A-Za-z0-9_:.])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?", e):
        tok, call = m.group(1), m.group(2)
        if call or tok.lower() in PROMQL_KEYWORDS:
            continue
        names.add(tok)
    return names


def documented_metrics() -> tuple[set[str], list[str]]:
    docs = sorted(glob.glob(str(ROOT / "docs" / "metrics*.md")))
    docs += [p for p in os.environ.get("OPS_EXTRA_METRICS_DOCS", "").split(":") if p]
    names: set[str] = set()
    for f in docs:
        for line in Path(f).read_text().splitlines():
            if not line.startswith("|"):
                continue
            cells = line.strip().strip("|").split("|")
            first = cells[0]
            for tok in re.findall(r"`([A-Za-z_:][A-Za-z0-9_:]*)(?:\{[^`]*\})?`", first):
                names.add(tok)
            # Families written as a template, e.g. `slurm_efa_port_<counter>_total` with the values
            # listed in the row as a backticked, space-separated list.
            for tmpl in re.findall(r"`([A-Za-z_:][A-Za-z0-9_:]*<[a-z_]+>[A-Za-z0-9_:]*)`", first):
                values = [w for chunk in re.findall(r"`([a-z0-9_ ]+)`", "|".join(cells[1:]))
                          if " " in chunk.strip() for w in chunk.split()]
                for v in values:
                    names.add(re.sub(r"<[a-z_]+>", v, tmpl))
    return names, docs


def recorded_metrics() -> set[str]:
    return {r["record"] for _, r in load_yaml_rules() if "record" in r}


def golden_metrics() -> tuple[set[str], list[str]]:
    files = sorted(glob.glob(str(ROOT / "tests" / "golden" / "*.prom")))
    for pattern in filter(None, os.environ.get("OPS_EXTRA_GOLDEN", "").split(":")):
        files += sorted(glob.glob(pattern))
    names: set[str] = set()
    for f in files:
        for line in Path(f).read_text().splitlines():
            if line.startswith("# TYPE "):
                fam = line.split()[2]
                names.add(fam)
                if line.split()[3:4] == ["counter"]:
                    names.add(fam + "_total")
            elif line and not line.startswith("#"):
                names.add(re.split(r"[{\s]", line, 1)[0])
    return names, files


def planned_metrics() -> dict[str, str]:
    p = ROOT / "tests" / "ops" / "planned-metrics.txt"
    out = {}
    for line in p.read_text().splitlines() if p.exists() else []:
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, _, why = line.partition(" ")
        why = why.strip()
        m = re.match(r"until:(\S+)\s*(.*)", why)
        if m:
            if (ROOT / m.group(1)).exists():
                continue  # that reference exists now: the name must be documented there
            why = f"until {m.group(1)} exists: {m.group(2)}"
        out[name] = why
    return out


# --------------------------------------------------------------------------------------------------

def cmd_dashboards() -> None:
    uids = {}
    for f, d in dashboards():
        problems = []
        if d.get("schemaVersion", 0) < 36:
            problems.append(f"schemaVersion {d.get('schemaVersion')} < 36 (Grafana 9.4+/10)")
        if not d.get("uid") or not d.get("title"):
            problems.append("missing uid or title")
        if d.get("uid") in uids:
            problems.append(f"uid {d['uid']} also used by {uids[d['uid']]}")
        uids[d.get("uid")] = f
        vars_ = {v["name"]: v for v in d.get("templating", {}).get("list", [])}
        ds = vars_.get("datasource")
        if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
            problems.append("no `datasource` variable of type datasource/prometheus")
        for name in REQUIRED_VARS:
            v = vars_.get(name)
            if not v:
                problems.append(f"missing variable ${name}")
            elif v.get("datasource", {}).get("uid") != "${datasource}":
                problems.append(f"variable ${name} does not use ${{datasource}}")
        panels = list(iter_panels(d))
        if not panels:
            problems.append("no panels")
        ids = [p.get("id") for p in panels]
        if len(ids) != len(set(ids)):
            problems.append("duplicate panel ids")
        for p in panels:
            where = f"panel {p.get('id')} '{p.get('title')}'"
            if p.get("type") == "row":
                continue
            if not p.get("title"):
                problems.append(f"{where}: no title")
            if p.get("datasource", {}).get("uid") != "${datasource}":
                problems.append(f"{where}: data source is not ${{datasource}}")
            targets = p.get("targets") or []
            if not targets:
                problems.append(f"{where}: no queries")
            for t in targets:
                if not t.get("expr", "").strip():
                    problems.append(f"{where}: empty query {t.get('refId')}")
                if t.get("datasource", {}).get("uid") != "${datasource}":
                    problems.append(f"{where}: query {t.get('refId')} data source is not ${{datasource}}")
            gp = p.get("gridPos", {})
            if not all(k in gp for k in ("x", "y", "w", "h")) or gp["x"] + gp["w"] > 24:
                problems.append(f"{where}: bad gridPos {gp}")
        for v in vars_.values():
            if v.get("type") == "query":
                for var in re.findall(r"\$\{?([A-Za-z_]+)", json.dumps(v.get("query"))):
                    if var not in vars_:
                        problems.append(f"variable ${v['name']} uses undefined ${var}")
        used = set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", json.dumps(d["panels"])))
        undefined = {u for u in used if not u.startswith("__") and u not in vars_}
        if undefined:
            problems.append(f"panels use undefined variables {sorted(undefined)}")
        report(not problems, f"dashboard structure {f}", "; ".join(problems))
    if not uids:
        report(False, "dashboards", "no dashboards/*.json")


def cmd_queries(url: str) -> None:
    items = [("dashboard", w, e) for w, e in dashboard_exprs()] + [("rule", w, e) for w, e in rule_exprs()]
    bad = []
    for kind, where, expr in items:
        sub = substitute(expr)
        data = urllib.parse.urlencode({"query": sub, "time": "1700000000"}).encode()
        try:
            with urllib.request.urlopen(url.rstrip("/") + "/api/v1/query", data=data, timeout=30) as r:
                body = json.loads(r.read())
        except urllib.error.HTTPError as e:  # 400 = parse error, 422 = execution error
            body = json.loads(e.read() or b"{}")
        if body.get("status") != "success":
            bad.append(f"{where}: {body.get('errorType')}: {body.get('error')}\n      query: {sub}")
    n_dash = sum(1 for k, _, _ in items if k == "dashboard")
    report(not bad, f"PromQL of {n_dash} dashboard queries and {len(items) - n_dash} rule expressions parses "
                    f"and evaluates on Prometheus", "\n    " + "\n    ".join(bad) if bad else "")


def cmd_metrics() -> None:
    documented, docs = documented_metrics()
    recorded = recorded_metrics()
    planned = planned_metrics()
    golden, golden_files = golden_metrics()
    used: dict[str, list[str]] = {}
    for where, expr in dashboard_exprs() + rule_exprs():
        for n in metric_names(expr):
            used.setdefault(n, []).append(where)
    print(f"      metrics docs: {', '.join(os.path.relpath(d, ROOT) for d in docs) or 'none'}; "
          f"{len(documented)} documented, {len(recorded)} recorded, {len(used)} used")
    unknown, pending = [], []
    for n, wheres in sorted(used.items()):
        if n in documented or n in recorded or n in BUILTIN_METRICS:
            continue
        if n in planned:
            pending.append(f"{n} ({planned[n]})")
        else:
            unknown.append(f"{n} (in {wheres[0]}{' and %d more' % (len(wheres) - 1) if len(wheres) > 1 else ''})")
    report(not unknown, "every metric in dashboards and rules is documented or recorded",
           "\n    " + "\n    ".join(unknown) if unknown else "")
    if pending:
        report(None, "metrics used before they are documented (tests/ops/planned-metrics.txt)",
               "\n    " + "\n    ".join(pending))
    stale_planned = sorted(n for n in planned if n in documented)
    if stale_planned:
        report(None, "planned metrics now documented; remove them from tests/ops/planned-metrics.txt",
               ", ".join(stale_planned))
    unused_rules = sorted(recorded - set(used))
    if unused_rules:
        report(None, "recording rules used by no dashboard or rule", ", ".join(unused_rules))
    if golden_files:
        exported = {n for n in used if n in documented or n in planned}
        missing = sorted(n for n in exported if n not in golden)
        report(None if missing else True,
               f"used metrics present in golden /metrics files ({len(golden_files)} files)",
               ("not in any golden file (conditional or not covered): " + ", ".join(missing)) if missing else "")
    else:
        report(None, "golden /metrics files", "tests/golden/*.prom not present; skipped")


def cmd_rules_annotations() -> None:
    try:
        import yaml  # type: ignore
    except ImportError:
        sys.exit("PyYAML is required")
    alerts = [(f, r) for f, r in load_yaml_rules() if "alert" in r]
    problems = []
    for f, r in alerts:
        ann = r.get("annotations", {})
        for key in ("summary", "runbook"):
            if not str(ann.get(key, "")).strip():
                problems.append(f"{f} {r['alert']}: no annotations.{key}")
        if "severity" not in r.get("labels", {}):
            problems.append(f"{f} {r['alert']}: no severity label")
    report(not problems, f"{len(alerts)} alerts have summary, runbook and severity", "; ".join(problems))

    # Each alert: a unit test expecting it to fire, and one expecting silence.
    fires, silent = set(), set()
    for tf in sorted(glob.glob(str(ROOT / "alerts" / "tests" / "*.yaml"))):
        doc = yaml.safe_load(Path(tf).read_text())
        for t in doc.get("tests", []):
            for a in t.get("alert_rule_test", []) or []:
                (fires if a.get("exp_alerts") else silent).add(a["alertname"])
    names = {r["alert"] for _, r in alerts}
    nf, ns = sorted(names - fires), sorted(names - silent)
    report(not nf and not ns, "every alert has a unit test where it fires and one where it stays silent",
           (f"never fires: {nf} " if nf else "") + (f"never tested silent: {ns}" if ns else ""))


def cmd_docs() -> None:
    text = (ROOT / "docs" / "alerts.md").read_text() if (ROOT / "docs" / "alerts.md").exists() else ""
    names = sorted({r["alert"] for _, r in load_yaml_rules() if "alert" in r})
    missing = [n for n in names if not re.search(rf"^#+\s+{n}\s*$", text, re.M)]
    report(not missing, "docs/alerts.md has a runbook section per alert", ", ".join(missing))
    anchors = set()
    for _, r in load_yaml_rules():
        if "alert" in r:
            anchors.update(re.findall(r"docs/alerts\.md#([a-z0-9-]+)", r["annotations"].get("runbook", "")))
    bad = sorted(a for a in anchors if a not in {n.lower() for n in names})
    report(not bad, "runbook links point to existing sections", ", ".join(bad))


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    cmd = argv[0]
    if cmd == "dashboards":
        cmd_dashboards()
    elif cmd == "queries":
        cmd_queries(argv[1])
    elif cmd == "metrics":
        cmd_metrics()
    elif cmd == "rules-annotations":
        cmd_rules_annotations()
    elif cmd == "docs":
        cmd_docs()
    elif cmd == "names":  # debugging aid: metric names of one expression
        print(sorted(metric_names(argv[1])))
    else:
        print(__doc__)
        return 2
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
