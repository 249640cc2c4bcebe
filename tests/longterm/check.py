#!/usr/bin/env python3
"""Assertions of tests/longterm/run.sh (two clusters, an HA pair of
Prometheus servers, VictoriaMetrics as the long-term store). Stdlib only.

1. The demos' clocks freeze: the usage counters stop at final values, read
   from each cluster scraper's /metrics (the reference).
2. Every backend (each Prometheus, VictoriaMetrics at / and at /prometheus)
   holds exactly those final values.
3. Every dashboard panel query, with the cluster variable set to each
   cluster, has data on VictoriaMetrics exactly where it has on each Prometheus.
4. The HA pair is stored once: no replica label in the store, as many
   series as one Prometheus, and no more samples per series than one
   Prometheus scraped (VictoriaMetrics' -dedup.minScrapeInterval).
6. Two replicas of beta's scraper (one Prometheus scraping it as two
   targets): `report` counts each counter once.
5. Alpha's scraper is stopped (the store gets staleness markers); then
   `report` for the month prints the same table on every backend, and each
   (cluster, account, user, TRES) row equals the counters; the engine-neutral
   exact window query (docs/long-term-storage.md) equals them too, where
   `increase()` does not have to.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
import check  # noqa: E402  (tests/e2e/check.py: metrics parser, dashboards, report)
from check import report  # noqa: E402

USAGE = "slurm_account_tres_usage_seconds_total"
TRES = ("gres/gpu", "cpu")


def query(url, expr, at=None):
    params = {"query": expr}
    if at is not None:
        params["time"] = f"{at:.3f}"
    try:
        body = json.loads(check.http_get(url + "/api/v1/query?" + urllib.parse.urlencode(params), timeout=20))
    except urllib.error.HTTPError as e:
        body = json.loads(e.read().decode() or "{}")
    except Exception as e:  # a backend not answering is a failed query, not a crash
        body = {"status": "error", "error": str(e)}
    if body.get("status") != "success":
        return None
    return body["data"]["result"]


def vector(url, expr, by, at=None):
    """{(label values...): value} of an instant-vector query; None on error."""
    r = query(url, expr, at)
    if r is None:
        return None
    return {tuple(s["metric"].get(b, "") for b in by): float(s["value"][1]) for s in r}


def counters(exporters):
    """{(cluster, account, user, tres): value} summed over partitions, from /metrics."""
    out = defaultdict(float)
    for cluster, url in exporters.items():
        for n, labels, v in check.parse_metrics(check.http_get(url + "/metrics")):
            if n == USAGE and labels.get("tres") in TRES:
                out[(cluster, labels["account"], labels["user"], labels["tres"])] += v
    return dict(out)


def wait_frozen(exporters, timeout):
    """The counters once two reads 3 s apart are equal (the demo clocks froze)."""
    deadline, prev = time.time() + timeout, None
    while time.time() < deadline:
        now = counters(exporters)
        if prev is not None and now == prev:
            return now
        prev = now
        time.sleep(3)
    return None


def same(a, b, tol=1e-9):
    if a is None or b is None or set(a) != set(b):
        return False
    return all(abs(a[k] - b[k]) <= tol * max(1.0, abs(b[k])) for k in a)


def diff(a, b):
    if a is None or b is None:
        return f"{a!r} vs {b!r}"
    keys = sorted(set(a) | set(b))
    d = [f"{k}: {a.get(k)} vs {b.get(k)}" for k in keys if a.get(k) != b.get(k)]
    return f"{len(d)} differ: " + "; ".join(d[:5])


def panels_with_data(url, dash_dir, cluster, at):
    """{(dashboard, panel #, title): has data} with $cluster = cluster; the job
    view's job id is the first of its variable query's values (the same on
    every backend: the clocks are frozen)."""
    out = {}
    for dash, variables, exprs in check.dashboards(dash_dir):
        values = {"cluster": cluster}
        for v in variables:
            if v.get("type") != "query" or v["name"] in values:
                continue
            if v.get("multi") or v.get("includeAll"):
                values[v["name"]] = ".*"
                continue
            q = v.get("query")
            q = q.get("query", "") if isinstance(q, dict) else (q or "")
            cands = check.label_values(url, q, values)
            values[v["name"]] = cands[0] if cands else ".*"
        for i, (title, expr) in enumerate(exprs):
            r = query(url, check.substitute(expr, values), at)
            out[(dash, i, title)] = bool(r)
    return out


def report_rows(text):
    """{(cluster, account, login, tres): Used} of the user rows of `report -P`."""
    rows, head = {}, None
    for line in text.splitlines():
        f = line.split("|")
        if f[0] == "Cluster" and head is None:
            head = f
        elif head and len(f) == len(head):
            r = dict(zip(head, f))
            if r["Login"]:
                rows[(r["Cluster"], r["Account"], r["Login"], r["TRES Name"])] = float(r["Used"])
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--freeze", type=float, required=True)
    ap.add_argument("--exporter", action="append", required=True, help="cluster=url")
    ap.add_argument("--stop-alpha-pid", type=int, required=True)
    ap.add_argument("--prometheus", action="append", required=True, help="name=url")
    ap.add_argument("--two-scrapers", required=True,
                    help="a Prometheus scraping beta's scraper as two targets (two replicas)")
    ap.add_argument("--victoria-metrics", required=True)
    ap.add_argument("--dashboards", default="dashboards")
    ap.add_argument("--work", required=True)
    args = ap.parse_args()
    t_start = time.time()
    month = time.strftime("%Y-%m", time.gmtime())
    exporters = dict(e.split("=", 1) for e in args.exporter)
    proms = dict(p.split("=", 1) for p in args.prometheus)
    vm = args.victoria_metrics
    backends = {**proms, "vm": vm, "vm/prometheus": vm + "/prometheus"}
    ok = True

    # 1. Final counter values.
    final = wait_frozen(exporters, args.freeze + 60)
    ok &= report("demo clocks froze: usage counters final", final is not None)
    if final is None:
        sys.exit(1)
    t_frozen = time.time()
    gpu = {c: sum(v for k, v in final.items() if k[0] == c and k[3] == "gres/gpu") for c in exporters}
    ok &= report("both clusters accrued GPU-seconds", all(v > 0 for v in gpu.values()),
                 ", ".join(f"{c}: {v:.0f}" for c, v in gpu.items()))

    # 2. Every backend holds the final values (VictoriaMetrics shows samples
    # -search.latencyOffset, 30 s, after they arrive).
    by = ("cluster", "account", "user", "tres")
    expr = f'sum by (cluster, account, user, tres) (last_over_time({USAGE}{{tres=~"gres/gpu|cpu"}}[10m]))'
    for name, url in backends.items():
        deadline, got = time.time() + 90, None
        while time.time() < deadline:
            got = vector(url, expr, by)
            if same(got, final):
                break
            time.sleep(2)
        ok &= report(f"{name} holds the final counters of both clusters", same(got, final), "" if same(got, final) else diff(got, final))

    # 3. Dashboards, per cluster: data on VictoriaMetrics where Prometheus has it.
    # All backends are asked at the same instants, 45 s back (VictoriaMetrics
    # hides the last -search.latencyOffset, 30 s): the node agents' counters
    # (EFA, XID) keep moving after the freeze, and an `increase(...[1m]) > 0`
    # error panel can turn on between two queries. A panel differs only if
    # it differs at two instants 5 s apart.
    at = time.time() - 45
    for cluster in sorted(exporters):
        ref = panels_with_data(proms["p1"], args.dashboards, cluster, at)
        full = sum(ref.values())
        # Most panels have data; those that do not are the same on every backend
        # (frozen clocks: `increase(...[1m]) > 0` error panels are empty by then).
        ok &= report(f"dashboards, cluster={cluster}: panel queries with data on p1", full >= 0.8 * len(ref),
                     f"{full}/{len(ref)}; empty: {[k[2] for k, v in ref.items() if not v][:6]}")
        ref2 = None
        for name in ("p2", "vm"):
            got = panels_with_data(backends[name], args.dashboards, cluster, at)
            bad = [k for k, v in ref.items() if got.get(k) != v]
            if bad:
                ref2 = ref2 or panels_with_data(proms["p1"], args.dashboards, cluster, at - 5)
                got2 = panels_with_data(backends[name], args.dashboards, cluster, at - 5)
                bad = [k for k in bad if got2.get(k) != ref2[k]]
            ok &= report(f"dashboards, cluster={cluster}: {name} has data exactly where p1 has", not bad,
                         "; ".join(f"{k[0]} / {k[2]}: {'data' if ref[k] else 'empty'} on p1" for k in bad[:6]))

    # 4. The HA pair is stored once.
    r = query(vm, 'count({prometheus_replica!=""})')
    ok &= report("store: no series carries the replica label", r == [], f"{r}")
    sel = f'{USAGE}{{cluster="beta",tres="gres/gpu"}}'
    n_p1 = vector(proms["p1"], f"count({sel})", ())
    n_vm = vector(vm, f"count({sel})", ())
    ok &= report("store: as many usage series as one Prometheus", n_p1 and n_p1 == n_vm, f"p1 {n_p1}, vm {n_vm}")
    at = t_frozen - 5
    c_p1 = vector(proms["p1"], f"max(count_over_time({sel}[20s]))", (), at) or {}
    c_vm = vector(vm, f"max(count_over_time({sel}[20s]))", (), at) or {}
    a, b = c_p1.get((), 0), c_vm.get((), 0)
    ok &= report("store: one sample per series per scrape interval (the pair deduplicated)",
                 a >= 15 and 0 < b <= a + 1, f"20 s window: p1 {a:.0f} samples, vm {b:.0f}")

    # 5. Alpha's scraper goes away; Prometheus marks its series stale.
    os.kill(args.stop_alpha_pid, signal.SIGTERM)
    deadline, up = time.time() + 30, None
    while time.time() < deadline:
        up = vector(proms["p1"], 'up{job="slurm-gpu-exporter-cluster",cluster="alpha"}', ())
        live = query(proms["p1"], f'{USAGE}{{cluster="alpha"}}')
        if up == {(): 0.0} and live == []:
            break
        time.sleep(1)
    ok &= report("alpha's scraper stopped: its series are stale in Prometheus", up == {(): 0.0} and live == [], f"up {up}")
    time.sleep(3)  # the staleness markers reach the store

    # The engine-neutral exact window query vs increase().
    window = int(time.time() - t_start + args.freeze + 120)
    m = f'{USAGE}{{tres=~"gres/gpu|cpu"}}'
    exact = (f"sum by (cluster, account, user, tres) (last_over_time({m}[{window}s])"
             f" - (last_over_time({m}[31d] offset {window}s) or last_over_time({m}[{window}s]) * 0))")
    inc = f"sum by (cluster, account, user, tres) (increase({m}[{window}s]))"
    for name, url in backends.items():
        got = vector(url, exact, by)
        ok &= report(f"{name}: last_over_time difference over the window == counters", same(got, final),
                     "" if same(got, final) else diff(got, final))
        g = vector(url, inc, by) or {}
        worst = max((abs(g.get(k, 0) - v) / v for k, v in final.items() if v > 0), default=0)
        print(f"  {name}: increase() over the same window is off by up to {100 * worst:.2f}% (not used by report)")

    # `report` on every backend.
    outs = {}
    for name, url in backends.items():
        p = subprocess.run([args.bin, "report", "--prometheus", url, "--month", month,
                            "-T", "gres/gpu,cpu", "-t", "Seconds", "-P"],
                           capture_output=True, text=True, timeout=120)
        # The header line names the window's end, "now" for the month in
        # progress: the second each report ran; every other line must match.
        outs[name] = "\n".join(l for l in p.stdout.splitlines() if "Utilization" not in l)
        with open(os.path.join(args.work, f"report-{name.replace('/', '-')}.txt"), "w") as f:
            f.write(p.stdout + p.stderr)
        rows = report_rows(p.stdout)
        want = {k: round(v) for k, v in final.items() if v > 0}
        got = {k: v for k, v in rows.items() if v > 0}
        ok &= report(f"report on {name}: every user row == the usage counters", p.returncode == 0 and got == want,
                     p.stderr.strip()[-300:] if p.returncode else ("" if got == want else diff(got, want)))
    differ = [f"{name}:\n" + "\n".join(sorted(set(o.splitlines()) ^ set(outs["p1"].splitlines())))
              for name, o in outs.items() if o != outs["p1"]]
    ok &= report("report: the same table (usage, cost, budgets) on every backend",
                 not differ and outs["p1"] != "", "\n".join(differ)[:2000])
    print(outs["vm"])

    # Two cluster-scraper replicas of beta: two copies of every counter; the
    # report counts each once (and says so).
    p = subprocess.run([args.bin, "report", "--prometheus", args.two_scrapers, "--month", month,
                        "-T", "gres/gpu,cpu", "-t", "Seconds", "-P"],
                       capture_output=True, text=True, timeout=120)
    n = vector(args.two_scrapers, f'count({USAGE}{{tres="gres/gpu"}})', ())
    want = {k: round(v) for k, v in final.items() if v > 0 and k[0] == "beta"}
    got = {k: v for k, v in report_rows(p.stdout).items() if v > 0}
    ok &= report("two scraper replicas: report counts each counter once", p.returncode == 0 and got == want
                 and "came from more than one scraper" in p.stderr and n == {(): 14.0},
                 f"{n} series; " + ("" if got == want else diff(got, want)) + p.stderr.strip()[-200:])
    if time.strftime("%Y-%m", time.gmtime()) != month:
        ok &= report("the test ran within one calendar month (rerun it)", False)
    print(f"{sum(1 for _, o in check.RESULTS if o)} passed, {sum(1 for _, o in check.RESULTS if not o)} failed")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
