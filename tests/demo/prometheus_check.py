#!/usr/bin/env python3
"""Assertions of tests/demo/run.sh: the demo, alone, fills every dashboard.

* the demo's cluster moves: jobs seen running at the start end, new ones run,
  GPU-hour and budget counters grow;
* every panel query of every dashboards/*.json returns data from a real
  Prometheus scraping the demo with the shipped rules (no allow-list);
* every metric name a dashboard or a rule (alerts/*.yaml) uses is emitted by
  the demo, or recorded by a shipped recording rule, or made by Prometheus
  itself (`up`, `ALERTS`).

The names are read from the dashboards and rules at run time, so renamed
metrics are checked as they are in the files. The dashboard query code is
tests/e2e/check.py's (imported, not copied). Stdlib only.
"""

import argparse
import glob
import json
import os
import re
import sys
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
import check  # noqa: E402  (tests/e2e/check.py)
from check import report  # noqa: E402

# PromQL words that are not metric names.
KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
    "unless", "offset", "inf", "nan", "atan2", "start", "end",
}
# Series Prometheus makes itself.
PROMETHEUS_MADE = {"up", "ALERTS", "ALERTS_FOR_STATE", "scrape_duration_seconds",
                   "scrape_samples_scraped", "scrape_series_added", "scrape_samples_post_metric_relabeling"}


def metric_names(expr):
    """Metric names in a PromQL expression (a lexer, not a parser: strings,
    label matchers, ranges, grouping label lists and function names are removed)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"[0-9][0-9a-zA-Z_.]*|[a-zA-Z_:][a-zA-Z0-9_:]*", e):
        word = m.group(0)
        if word[0].isdigit():
            continue  # a number or a duration (1e3, 10m)
        rest = e[m.end():].lstrip()
        if rest.startswith("("):
            continue  # a function or aggregation
        if word.lower() in KEYWORDS:
            continue
        # Durations and numbers such as 1e3, and Grafana variables, are not names.
        if e[max(0, m.start() - 1)] == "$":
            continue
        names.add(word)
    return names


def rule_files(rules_dir):
    """(recorded names, [(where, expr)]) from the rule files (YAML read by
    regex: the rule files keep `record:`/`alert:` and `expr:` one per line,
    with block scalars for long expressions)."""
    recorded, exprs = set(), []
    for path in sorted(glob.glob(os.path.join(rules_dir, "*.yaml"))):
        lines = open(path).read().splitlines()
        i, name = 0, None
        while i < len(lines):
            line = lines[i]
            m = re.match(r"\s*-?\s*(record|alert):\s*(\S+)", line)
            if m:
                name = m.group(2)
                if m.group(1) == "record":
                    recorded.add(name)
            m = re.match(r"(\s*)expr:\s*(.*)$", line)
            if m:
                indent, text = len(m.group(1)), m.group(2).strip()
                if text in ("|", ">", "|-", ">-"):
                    body = []
                    i += 1
                    while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent):
                        body.append(lines[i])
                        i += 1
                    exprs.append((f"{os.path.basename(path)} / {name}", "\n".join(body)))
                    continue
                exprs.append((f"{os.path.basename(path)} / {name}", text.strip("'\"")))
            i += 1
    return recorded, exprs


def recent_label_values(prom, query, values, window_s=20):
    """check.label_values restricted to series seen in the last seconds (as
    Grafana restricts it to the dashboard's range), newest job ids first: a
    user picks a job that runs now, and the demo's jobs are short at --speed."""
    m = re.match(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*$", query, re.S)
    if not m:
        return []
    selector = check.substitute(m.group(1), values)
    now = time.time()
    url = prom + "/api/v1/series?" + urllib.parse.urlencode(
        {"match[]": selector, "start": now - window_s, "end": now})
    series = json.loads(check.http_get(url, timeout=15))["data"]
    found = {s[m.group(2)] for s in series if m.group(2) in s}
    return sorted(found, key=lambda v: (not v.isdigit(), -int(v) if v.isdigit() else 0, v))


check.label_values = recent_label_values


def emitted(exporter):
    return {n for n, _, _ in check.parse_metrics(check.http_get(exporter + "/metrics"))}


def wait_ready(url, what, timeout=90):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return report(f"{what} ready", True)
        except Exception:
            time.sleep(0.5)
    return report(f"{what} ready", False, url)


def empty_panels(prom, dash_dir):
    empty = []
    for dash, variables, exprs in check.dashboards(dash_dir):
        values = check.choose_values(prom, variables, exprs)
        for title, expr in exprs:
            body = check.prom_query(prom, check.substitute(expr, values))
            if body.get("status") != "success" or not body["data"]["result"]:
                empty.append(f"{dash} / {title}")
    return empty


def sample(exporter, name, **labels):
    total = 0.0
    for n, l, v in check.parse_metrics(check.http_get(exporter + "/metrics")):
        if n == name and all(l.get(k) == want for k, want in labels.items()):
            total += v
    return total


def running_gpu_jobs(exporter):
    return {l["job_id"] for n, l, v in check.parse_metrics(check.http_get(exporter + "/metrics"))
            if n == "slurm_job_gpus" and v > 0}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--exporter", required=True)
    ap.add_argument("--prometheus", required=True)
    ap.add_argument("--dashboards", default="dashboards")
    ap.add_argument("--rules", default="alerts")
    ap.add_argument("--min-seconds", type=float, default=45,
                    help="let the cluster move at least this long before checking panels")
    ap.add_argument("--max-seconds", type=float, default=180)
    args = ap.parse_args()
    t0 = time.time()
    ok = wait_ready(args.exporter + "/readyz", "demo /readyz")
    ok &= wait_ready(args.prometheus + "/-/ready", "prometheus")
    if not ok:
        sys.exit(1)

    jobs_at_start = running_gpu_jobs(args.exporter)
    gpu_seconds_at_start = sample(args.exporter, "slurm_account_tres_usage_seconds_total", tres="gres/gpu")

    # Panels fill as Prometheus collects samples and the rules evaluate.
    empty = None
    while time.time() - t0 < args.max_seconds:
        if time.time() - t0 >= args.min_seconds:
            empty = empty_panels(args.prometheus, args.dashboards)
            if not empty:
                break
            print(f"  {len(empty)} panel queries still empty after {time.time() - t0:.0f}s: {empty[:4]}", flush=True)
        time.sleep(3)

    # Time moves: GPU jobs end and start, GPU-hours and budgets grow.
    jobs_now = running_gpu_jobs(args.exporter)
    ok &= report("demo: GPU jobs running at the start ended, others started",
                 bool(jobs_at_start - jobs_now) and bool(jobs_now - jobs_at_start),
                 f"start {sorted(jobs_at_start)}, now {sorted(jobs_now)}")
    gpu_seconds = sample(args.exporter, "slurm_account_tres_usage_seconds_total", tres="gres/gpu")
    ok &= report("demo: GPU-seconds counters grow", gpu_seconds > gpu_seconds_at_start,
                 f"{gpu_seconds_at_start} -> {gpu_seconds}")
    ok &= report("demo: budget use reported",
                 sample(args.exporter, "slurm_account_budget_used_seconds", tres="gres/gpu") > 0)

    # A job chosen for the job view can end while its panels are queried (jobs
    # last about a minute at --speed 60): then the check is taken again.
    for attempt in range(3):
        if attempt:
            print(f"  dashboards: attempt {attempt + 1}", flush=True)
            time.sleep(2)
        dash_ok = check.check_dashboards(args.prometheus, args.dashboards, [])
        if dash_ok:
            break
    ok &= dash_ok

    # Every metric a dashboard or rule names exists.
    recorded, rule_exprs = rule_files(args.rules)
    dash_exprs = []
    for dash, variables, exprs in check.dashboards(args.dashboards):
        dash_exprs += [(f"{dash} / {t}", e) for t, e in exprs]
        for v in variables:
            q = v.get("query")
            q = q.get("query", "") if isinstance(q, dict) else (q or "")
            m = re.match(r"\s*label_values\((.*),\s*\w+\s*\)\s*$", q, re.S)
            if v.get("type") == "query" and m:
                dash_exprs.append((f"{dash} / variable {v.get('name')}", m.group(1)))
    have = emitted(args.exporter)
    wanted = {}
    for where, expr in dash_exprs + rule_exprs:
        for name in metric_names(expr):
            wanted.setdefault(name, where)
    ok &= report("dashboards and rules name metrics", len(wanted) > 20, f"{len(wanted)} names")
    for name, where in sorted(wanted.items()):
        if name in have or name in recorded or name in PROMETHEUS_MADE:
            continue
        ok &= report(f"metric emitted by the demo: {name}", False, f"named in {where}")
    # Every recording rule yields data from the demo alone.
    for name in sorted(recorded):
        body = check.prom_query(args.prometheus, name)
        n = len(body.get("data", {}).get("result", [])) if body.get("status") == "success" else 0
        ok &= report(f"recording rule has data: {name}", n > 0, f"{n} series")
    print(f"  checked in {time.time() - t0:.0f}s", flush=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
