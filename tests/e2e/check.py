#!/usr/bin/env python3
"""Assertions of the live end-to-end test.

Compares the exporter's /metrics with squeue, sinfo and sacct taken at the same
moment, checks Prometheus (targets, dashboard queries, alerts), and drives the
slurmrestd stop/restart check. Each check prints PASS/FAIL with details.
Stdlib only: it runs on a fresh Debian machine.
"""

import argparse
import glob
import json
import os
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections import defaultdict

RESULTS = []
# Whether slurmrestd serves /shares (API v0.0.39+, Slurm 23.02+); set from --release.
SHARES = False


def report(name, ok, detail=""):
    RESULTS.append((name, ok))
    print(f"[{'PASS' if ok else 'FAIL'}] {name}" + (f": {detail}" if detail else ""), flush=True)
    return ok


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """[(name, {labels}, value)] from Prometheus text format."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if not m:
            continue
        labels = dict(LABEL.findall(m.group(3) or ""))
        out.append((m.group(1), labels, float(m.group(4))))
    return out


def group(samples, name, by, where=None):
    acc = defaultdict(float)
    for n, labels, v in samples:
        if n != name:
            continue
        if where and not all(labels.get(k) == want for k, want in where.items()):
            continue
        acc[tuple(labels.get(b, "") for b in by)] += v
    return {k: v for k, v in acc.items() if v != 0}


def run(cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def cli_snapshot():
    """What the Slurm CLI says right now, in the exporter's terms."""
    snap = {}
    jobs = defaultdict(float)
    for line in run(["squeue", "-r", "-h", "-t", "PD,R,S,CG", "-o", "%T|%a"]).splitlines():
        state, account = line.split("|")
        jobs[(state.lower(), account)] += 1
    snap["active jobs per state and account (squeue -r)"] = dict(jobs)

    squeue = json.loads(run(["squeue", "--json"]))
    gpus = defaultdict(float)
    for j in squeue["jobs"]:
        state = j["job_state"] if isinstance(j["job_state"], str) else j["job_state"][0]
        if state != "RUNNING":
            continue
        m = re.search(r"(?:^|,)gres/gpu=(\d+)", j.get("tres_alloc_str") or "")
        if m:
            gpus[(j["account"],)] += float(m.group(1))
    snap["GPUs allocated per account (squeue --json tres_alloc_str)"] = dict(gpus)

    sacct_gpus = defaultdict(float)
    for line in run(["sacct", "-X", "-a", "-n", "-P", "-s", "R", "-o", "Account,AllocTRES"]).splitlines():
        account, tres = line.split("|")
        m = re.search(r"(?:^|,)gres/gpu=(\d+)", tres)
        if m:
            sacct_gpus[(account,)] += float(m.group(1))
    snap["GPUs allocated per account (sacct -s R AllocTRES)"] = dict(sacct_gpus)

    finished = defaultdict(float)
    for line in run(["sacct", "-X", "-a", "-n", "-P", "-S", "now-1days", "-o", "JobIDRaw,State,Account"]).splitlines():
        _, state, account = line.split("|")
        state = state.split()[0].lower()  # "CANCELLED by 1001"
        if state in ("completed", "failed", "cancelled", "timeout"):
            finished[(state, account)] += 1
    snap["finished jobs per state and account (sacct)"] = dict(finished)

    # `scontrol -o` reads the same on every release (sinfo --json changed shape in
    # 24.05); like slurmrestd's /nodes it leaves out FUTURE nodes.
    nodes = defaultdict(float)
    drained = 0
    for line in run(["scontrol", "-o", "show", "node"]).splitlines():
        m = re.search(r"\bState=(\S+)", line)
        if not m:
            continue
        parts = m.group(1).split("+")
        nodes[(parts[0].lower(),)] += 1
        drained += "DRAIN" in parts[1:]
    snap["nodes per base state (scontrol show node)"] = dict(nodes)
    snap["drained nodes (scontrol show node)"] = {("DRAIN",): float(drained)} if drained else {}

    # Pending reasons: the reason's name, as `squeue --json` gives it (state_reason).
    # `squeue -o %r` prints the job's state description instead where slurmctld set
    # one ("Nodes required for job are DOWN, DRAINED or reserved ...", "ReqNodeNotAvail,
    # UnavailableNodes:..."): free text, so not a label (docs/metrics.md, "Pending reason").
    reasons = defaultdict(float)
    texts = dict(l.split("|", 1) for l in run(["squeue", "-r", "-h", "-t", "PD", "-o", "%i|%r"]).splitlines())
    for j in squeue["jobs"]:
        state = j["job_state"] if isinstance(j["job_state"], str) else j["job_state"][0]
        if state != "PENDING":
            continue
        reasons[(j["account"], j.get("state_reason") or "None")] += pending_tasks(j)
        if j.get("state_description"):
            print(f"  job {j.get('job_id')}: reason {j.get('state_reason')}, squeue -o %r: "
                  f"{texts.get(str(j.get('job_id')), '?')!r}", flush=True)
    snap["pending jobs per account and reason (squeue --json state_reason)"] = dict(reasons)

    # Partition totals: scontrol counts every configured node, FUTURE ones too.
    parts = {}
    for line in run(["scontrol", "-o", "show", "partition"]).splitlines():
        name = re.search(r"\bPartitionName=(\S+)", line).group(1)
        tres = re.search(r"\bTRES=(\S+)", line)
        gpus = re.search(r"(?:^|,)gres/gpu=(\d+)", tres.group(1)) if tres else None
        parts[(name, "nodes")] = float(re.search(r"\bTotalNodes=(\d+)", line).group(1))
        parts[(name, "cpus")] = float(re.search(r"\bTotalCPUs=(\d+)", line).group(1))
        parts[(name, "gpus")] = float(gpus.group(1)) if gpus else 0.0
    snap["partition nodes, CPUs, GPUs (scontrol show partition)"] = {k: v for k, v in parts.items() if v}

    # slurmctld's own statistics (sdiag): job counters since its start.
    sdiag = run(["sdiag"])
    counters = {}
    for word in ("submitted", "started", "completed", "canceled", "failed"):
        m = re.search(rf"^\s*Jobs {word}:\s*(\d+)", sdiag, re.M)
        if m and int(m.group(1)):
            counters[(word,)] = float(m.group(1))
    snap["job counters (sdiag)"] = counters

    if SHARES:
        snap["fairshare (sshare -a -l)"] = sshare_snapshot()
    return snap


def pending_tasks(job):
    """Jobs a squeue --json record stands for: a pending array's meta record
    ("3-9%3", "1,4-6") holds every task not yet started, as `squeue -r` lists them."""
    spec = (job.get("array_task_string") or "").split("%")[0]
    if not spec:
        return 1
    n = 0
    for part in spec.split(","):
        rng, _, step = part.partition(":")
        lo, _, hi = rng.partition("-")
        n += (int(hi or lo) - int(lo)) // int(step or 1) + 1
    return n


def sshare_snapshot():
    """Shares per association as sshare prints them: FairShare on user rows,
    LevelFS on account rows (what the exporter's factor means there), 'inf' as +Inf."""
    out = {}
    lines = run(["sshare", "-a", "-l", "-P"]).splitlines()
    head = lines[0].split("|")
    parent_stack = []
    for line in lines[1:]:
        row = dict(zip(head, line.split("|")))
        depth = len(row["Account"]) - len(row["Account"].lstrip(" "))
        account, user = row["Account"].strip(), row["User"].strip()
        if account == "root" and not user:
            continue
        key = (account, user)
        for col, name in (("RawShares", "raw_shares"), ("NormShares", "normalized_shares"),
                          ("EffectvUsage", "effective_usage")):
            v = row.get(col, "")
            if v not in ("", "parent"):
                out[key + (name,)] = float(v)
        fs = row["LevelFS"] if not user else row["FairShare"]
        if fs != "":
            out[key + ("fairshare",)] = float("inf") if fs == "inf" else float(fs)
    return out


def share_view(samples):
    out = {}
    for metric, name in (("slurm_share_raw_shares", "raw_shares"),
                         ("slurm_share_normalized_shares_ratio", "normalized_shares"),
                         ("slurm_share_effective_usage_ratio", "effective_usage"),
                         ("slurm_share_fairshare_factor", "fairshare")):
        for n, labels, v in samples:
            if n == metric and not (labels.get("account") == "root" and not labels.get("user")):
                out[(labels.get("account", ""), labels.get("user", ""), name)] = v
    return out


def close(a, b):
    """Equal within sshare's printed precision (6 decimals) for every key."""
    if set(a) != set(b):
        return False
    for k in a:
        x, y = a[k], b[k]
        if x == y:
            continue
        if abs(x - y) > 1e-6 + 1e-6 * abs(y):
            return False
    return True


def exporter_view(samples):
    active = {k: v for k, v in group(samples, "slurm_cluster_jobs", ["state", "account"]).items()
              if k[0] in ("pending", "running", "suspended", "completing")}
    finished = {k: v for k, v in group(samples, "slurm_cluster_jobs", ["state", "account"]).items()
                if k[0] in ("completed", "failed", "cancelled", "timeout")}
    gpus = group(samples, "slurm_cluster_jobs_allocated_gpus", ["account"])
    return {
        "active jobs per state and account (squeue -r)": active,
        "GPUs allocated per account (squeue --json tres_alloc_str)": gpus,
        "GPUs allocated per account (sacct -s R AllocTRES)": gpus,
        "finished jobs per state and account (sacct)": finished,
        "nodes per base state (scontrol show node)": group(samples, "slurm_cluster_nodes", ["state"]),
        "drained nodes (scontrol show node)": group(samples, "slurm_cluster_nodes_with_flag", ["flag"], {"flag": "DRAIN"}),
        "pending jobs per account and reason (squeue --json state_reason)": group(samples, "slurm_cluster_jobs_pending", ["account", "reason"]),
        "partition nodes, CPUs, GPUs (scontrol show partition)": {
            (p, kind): v
            for kind, metric in (("nodes", "slurm_cluster_partition_nodes"), ("cpus", "slurm_cluster_partition_cpus"),
                                 ("gpus", "slurm_cluster_partition_gpus"))
            for (p,), v in group(samples, metric, ["partition"]).items()},
        "job counters (sdiag)": {
            (w,): v for w in ("submitted", "started", "completed", "canceled", "failed")
            for v in [metric_sum(samples, f"slurm_scheduler_jobs_{w}_total")] if v},
        "fairshare (sshare -a -l)": share_view(samples),
    }


def metric_sum(samples, name):
    return sum(v for n, _, v in samples if n == name)


def polls(exporter):
    for n, _, v in parse_metrics(http_get(exporter + "/metrics")):
        if n == "slurm_exporter_polls_total":
            return v
    return 0


def wait_fresh_poll(exporter, timeout=60):
    start = polls(exporter)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if polls(exporter) >= start + 1:
            return True
        time.sleep(0.5)
    return False


def same(key, a, b):
    return close(a, b) if key.startswith("fairshare") else a == b


def check_equality(exporter, attempts=5):
    """CLI before, a fresh poll, metrics, CLI after: compare when the CLI did not move."""
    last = None
    for _ in range(attempts):
        before = cli_snapshot()
        if not wait_fresh_poll(exporter):
            return report("exporter polls slurmrestd", False, "no poll within 60 s")
        samples = parse_metrics(http_get(exporter + "/metrics"))
        after = cli_snapshot()
        if before != after:
            continue  # the cluster moved under us; take another look
        view = exporter_view(samples)
        last = (before, view)
        if all(same(k, view[k], before[k]) for k in before):
            break
        time.sleep(2)
    if last is None:
        return report("exporter equals CLI", False, "the cluster never held still")
    before, view = last
    ok = True
    for k in before:
        ok &= report(f"exporter == CLI: {k}", same(k, view[k], before[k]),
                     f"exporter={sorted(view[k].items())} cli={sorted(before[k].items())}")
    # The equality above held with /nodes?update_time= on (the CLI default).
    kinds = {l.get("kind"): v for n, l, v in parse_metrics(http_get(exporter + "/metrics"))
             if n == "slurm_exporter_nodes_polls_total"}
    ok &= report("conditional /nodes polling on", kinds.get("full", 0) >= 1 and "unchanged" in kinds,
                 f"slurm_exporter_nodes_polls_total={kinds}")
    return ok


def usage_snapshot(exporter):
    """GPU-seconds per account from the usage counter, and the time of the
    jobs poll that credited them (the accountant credits up to the poll)."""
    samples = parse_metrics(http_get(exporter + "/metrics"))
    per_account = group(samples, "slurm_account_tres_usage_seconds_total", ["account"], {"tres": "gres/gpu"})
    polled = [v for n, l, v in samples
              if n == "slurm_exporter_last_success_timestamp_seconds" and l.get("endpoint") == "jobs"]
    return {k[0]: v for k, v in per_account.items()}, polled[0] if polled else None


def sacct_gpu_seconds(t0, t1):
    """GPU-seconds each account's jobs held within [t0, t1], from sacct."""
    env = dict(os.environ, SLURM_TIME_FORMAT="%s")
    out = subprocess.run(["sacct", "-X", "-a", "-n", "-P", "-S", "now-1days", "-E", "now+1hours",
                          "-o", "JobIDRaw,Account,AllocTRES,Start,End"],
                         check=True, capture_output=True, text=True, env=env).stdout
    acc = defaultdict(float)
    for line in out.splitlines():
        _, account, tres, start, end = line.split("|")
        m = re.search(r"(?:^|,)gres/gpu=(\d+)", tres)
        if not m or not start.isdigit():
            continue
        s = float(start)
        e = float(end) if end.isdigit() else t1  # running: "Unknown"
        overlap = min(e, t1) - max(s, t0)
        if overlap > 0:
            acc[account] += float(m.group(1)) * overlap
    return dict(acc)


def check_usage(exporter, prom, window=60):
    """The usage counters' increase over a window equals what sacct says the
    accounts' jobs held in that window (exact to the poll instants), and
    Prometheus' increase() agrees within its extrapolation bound."""
    c0, p0 = usage_snapshot(exporter)
    time.sleep(window)
    c1, p1 = usage_snapshot(exporter)
    if p0 is None or p1 is None or p1 <= p0:
        return report("usage counters advance with polls", False, f"poll times {p0} {p1}")
    want = sacct_gpu_seconds(p0, p1)
    got = {a: c1.get(a, 0.0) - c0.get(a, 0.0) for a in set(c0) | set(c1)}
    got = {a: v for a, v in got.items() if v > 0}
    ok = report("usage: some GPU-seconds were credited", sum(got.values()) > 0, f"{got}")
    rows = []
    for account in sorted(set(want) | set(got)):
        w, g = want.get(account, 0.0), got.get(account, 0.0)
        rel = abs(g - w) / w if w else (0.0 if g == 0 else 1.0)
        rows.append(f"{account}: exporter {g:.1f} GPU-s, sacct {w:.1f} GPU-s, diff {rel * 100:.2f}%")
        ok &= report(f"usage == sacct over {p1 - p0:.1f}s: {account}", rel <= 0.01, rows[-1])
    # Prometheus increase() over the same window, evaluated at the second read.
    span = int(p1 - p0)
    body = prom_query(prom, f'sum by (account) (increase(slurm_account_tres_usage_seconds_total{{tres="gres/gpu"}}[{span}s]))')
    if body.get("status") == "success":
        inc = {r["metric"].get("account", ""): float(r["value"][1]) for r in body["data"]["result"]}
        for account, w in sorted(want.items()):
            # Scrapes and polls every 2 s: increase() extrapolates over at most one poll at each edge.
            bound = 2 * 2.0 / span + 0.01
            rel = abs(inc.get(account, 0.0) - w) / w if w else 0.0
            ok &= report(f"usage: Prometheus increase()[{span}s] vs sacct: {account}", rel <= bound,
                         f"increase {inc.get(account, 0.0):.1f}, sacct {w:.1f}, diff {rel * 100:.2f}% (bound {bound * 100:.1f}%)")
    else:
        ok &= report("usage: Prometheus increase() query", False, str(body))
    return ok


# Numbers the exporter and Slurm's own OpenMetrics (26.05, scraped into the same
# Prometheus) both carry: (what, ours, Slurm's). Slurm's memory is MiB.
NATIVE_PAIRS = [
    ("running jobs", 'sum(slurm_cluster_jobs{state="running"})', "sum(slurm_jobs_running)"),
    ("GPUs allocated", "sum(slurm_cluster_jobs_allocated_gpus)", "sum(slurm_jobs_gpus_alloc)"),
    ("CPUs allocated", "sum(slurm_cluster_jobs_allocated_cpus)", "sum(slurm_jobs_cpus_alloc)"),
    ("memory allocated", "sum(slurm_cluster_jobs_allocated_memory_bytes)", "sum(slurm_jobs_memory_alloc) * 1048576"),
    ("GPUs allocated per account", "sum by (account) (slurm_cluster_jobs_allocated_gpus)",
     "sum by (account) (slurm_account_jobs_gpus_alloc)"),
    ("CPUs allocated per account", "sum by (account) (slurm_cluster_jobs_allocated_cpus)",
     "sum by (account) (slurm_account_jobs_cpus_alloc)"),
    ("all configured nodes (ours + Slurm's FUTURE count)",
     "sum(slurm_cluster_nodes) + sum(slurm_nodes_future)", "sum(slurm_nodes)"),
    ("mixed nodes", 'sum(slurm_cluster_nodes{state="mixed"})', "sum(slurm_nodes_mixed)"),
    ("drained or draining nodes", 'sum(slurm_cluster_nodes_with_flag{flag="DRAIN"})', "sum(slurm_nodes_drain)"),
    ("nodes per partition", "sum by (partition) (slurm_cluster_partition_nodes)",
     "sum by (partition) (slurm_partition_nodes)"),
    ("CPUs per partition", "sum by (partition) (slurm_cluster_partition_cpus)",
     "sum by (partition) (slurm_partition_cpus)"),
    ("GPUs per partition", "sum by (partition) (slurm_cluster_partition_gpus)",
     "sum by (partition) (slurm_partition_gpus)"),
    ("running jobs per partition", 'sum by (partition) (slurm_cluster_partition_jobs{state="running"})',
     "sum by (partition) (slurm_partition_jobs_running)"),
    # Slurm's per-node series include FUTURE nodes, which slurmrestd does not list.
    ("nodes with per-node series", "count(slurm_cluster_node_cpus) + sum(slurm_nodes_future)",
     "count(slurm_node_cpus)"),
] + [
    (f"{what} per node (FUTURE nodes aside)", f"sum by (node) ({ours})",
     f"sum by (node) ({theirs}) and on (node) group by (node) (slurm_cluster_node_cpus)")
    for what, ours, theirs in (
        ("CPUs", "slurm_cluster_node_cpus", "slurm_node_cpus"),
        ("GPUs", "slurm_cluster_node_gpus", "slurm_node_gpus"),
        ("allocated CPUs", "slurm_cluster_node_allocated_cpus", "slurm_node_cpus_alloc"),
        ("allocated GPUs", "slurm_cluster_node_allocated_gpus", "slurm_node_gpus_alloc"),
        ("memory", "slurm_cluster_node_memory_bytes", "slurm_node_memory_bytes * 1048576"),
        ("allocated memory", "slurm_cluster_node_allocated_memory_bytes", "slurm_node_memory_alloc_bytes * 1048576"),
    )
]


def prom_vector(prom, expr):
    body = prom_query(prom, expr)
    if body.get("status") != "success":
        return None
    return {tuple(sorted(r["metric"].items())): float(r["value"][1])
            for r in body["data"]["result"] if float(r["value"][1]) != 0}


def check_native(prom, timeout=60):
    """Every number the exporter shares with Slurm's own metrics agrees (read
    from one Prometheus that scrapes both), retried while scrapes catch up."""
    ok = True
    for what, ours, theirs in NATIVE_PAIRS:
        deadline = time.time() + timeout
        while True:
            a, b = prom_vector(prom, ours), prom_vector(prom, theirs)
            good = a is not None and b is not None and len(b) > 0 and a == b
            if good or time.time() > deadline:
                break
            time.sleep(2)
        ok &= report(f"exporter == Slurm's own metrics: {what}", good, f"ours {a} :: Slurm's {b}")
    return ok


def check_sreport(exporter, sreport_cmd, start, end):
    """After every job ended and slurmdbd rolled the hours up: per account, the
    GPU-seconds sreport reports for the closed hours [start, end) equal the
    exporter's usage counters, which started before the first job."""
    samples = parse_metrics(http_get(exporter + "/metrics"))
    counters = {k[0]: v for k, v in group(samples, "slurm_account_tres_usage_seconds_total", ["account"],
                                         {"tres": "gres/gpu"}).items()}
    fmt = "%Y-%m-%dT%H:%M:%S"
    cmd = sreport_cmd + ["-t", "seconds", "-T", "gres/gpu", "-P", "cluster", "AccountUtilizationByUser",
                         f"start={time.strftime(fmt, time.localtime(start))}",
                         f"end={time.strftime(fmt, time.localtime(end))}"]
    got, deadline, out = {}, time.time() + 90, ""
    while time.time() < deadline:
        out = subprocess.run(cmd, capture_output=True, text=True).stdout
        lines = [l for l in out.splitlines() if "|" in l]
        got = {}
        if lines:
            head = lines[0].split("|")
            for l in lines[1:]:
                row = dict(zip(head, l.split("|")))
                if row.get("Login", "") == "" and row.get("Account") not in ("", "root", None):
                    got[row["Account"]] = float(row["Used"])
        # the rollup runs right after slurmdbd starts: wait until it wrote the hours
        if got and all(got.get(a, 0) > 0 for a in counters if counters[a] > 0):
            break
        time.sleep(3)
    ok = report("sreport: closed hours rolled up, in GPU-seconds", bool(got) and "gres/gpu" in out,
                out.strip()[:600])
    # Money: the cost counter is the same GPU-seconds at run.sh's price (4.10 USD per GPU-hour).
    cost = {k[0]: v for k, v in group(samples, "slurm_account_tres_cost_total", ["account"],
                                      {"tres": "gres/gpu", "currency": "USD"}).items()}
    for account, secs in sorted(counters.items()):
        want = secs / 3600 * 4.10
        ok &= report(f"GPU cost == GPU-seconds x price: {account}",
                     abs(cost.get(account, 0.0) - want) <= 1e-9 * max(want, 1.0),
                     f"cost {cost.get(account, 0.0):.6f} USD, {secs:.0f} GPU-s x 4.10/3600 = {want:.6f}")
    for account in sorted(set(got) | set(counters)):
        if account in ("research_dept", "root"):
            continue  # parent rows: the sum of their children
        a, b = counters.get(account, 0.0), got.get(account, 0.0)
        ok &= report(f"usage counter == sreport -t seconds gres/gpu over the closed hours: {account}",
                     abs(a - b) <= 1.0, f"exporter {a:.0f} GPU-s, sreport {b:.0f} GPU-s")
    return ok


MEM_UNITS = {"K": 1024, "M": 1024 ** 2, "G": 1024 ** 3, "T": 1024 ** 4, "P": 1024 ** 5}


def tres_values(spec):
    """sacctmgr's "cpu=10,mem=16G,gres/gpu=6" -> {tres: value}; memory in bytes."""
    out = {}
    for item in filter(None, spec.split(",")):
        name, _, v = item.partition("=")
        if name == "mem":
            unit = v[-1] if v and v[-1] in MEM_UNITS else "M"
            out[name] = float(v.rstrip("KMGTP")) * MEM_UNITS[unit]
        else:
            out[name] = float(v)
    return out


# sacctmgr column -> (metric kind, the exporter's `limit` label)
ASSOC_COLUMNS = {"GrpTRES": ("tres", "GrpTRES"), "MaxTRES": ("tres", "MaxTRESPerJob"),
                 "GrpTRESMins": ("seconds", "GrpTRESMins"), "GrpJobs": ("jobs", "GrpJobs"),
                 "MaxJobs": ("jobs", "MaxJobs"), "GrpSubmit": ("jobs", "GrpSubmit")}
QOS_COLUMNS = {"GrpTRES": ("tres", "GrpTRES"), "MaxTRESPU": ("tres", "MaxTRESPerUser"),
               "MaxTRES": ("tres", "MaxTRESPerJob"), "GrpJobs": ("jobs", "GrpJobs"),
               "MaxJobsPU": ("jobs", "MaxJobsPerUser")}


def sacctmgr_limits():
    """The limits sacctmgr shows, keyed like the exporter's series."""
    want = {}
    cols = ",".join(["account", "user", "partition"] + list(ASSOC_COLUMNS))
    lines = run(["sacctmgr", "-n", "-P", "show", "assoc", f"format={cols}"]).splitlines()
    for line in lines:
        row = dict(zip(["account", "user", "partition"] + list(ASSOC_COLUMNS), line.split("|")))
        who = (row["account"], row["user"], row["partition"])
        for col, (kind, limit) in ASSOC_COLUMNS.items():
            if not row[col]:
                continue
            if kind == "jobs":
                want[("assoc", kind) + who + (limit, "")] = float(row[col])
            else:
                for tres, v in tres_values(row[col]).items():
                    want[("assoc", kind) + who + (limit, tres)] = v * (60 if kind == "seconds" else 1)
    cols = ",".join(["name"] + list(QOS_COLUMNS))
    for line in run(["sacctmgr", "-n", "-P", "show", "qos", f"format={cols}"]).splitlines():
        row = dict(zip(["name"] + list(QOS_COLUMNS), line.split("|")))
        for col, (kind, limit) in QOS_COLUMNS.items():
            if not row[col]:
                continue
            if kind == "jobs":
                want[("qos", kind, row["name"], limit, "")] = float(row[col])
            else:
                for tres, v in tres_values(row[col]).items():
                    want[("qos", kind, row["name"], limit, tres)] = v
    return want


def exporter_limits(samples):
    got = {}
    for n, l, v in samples:
        m = re.fullmatch(r"slurm_(assoc|qos)_(tres|tres_seconds|jobs)_limit", n)
        if not m:
            continue
        kind = {"tres": "tres", "tres_seconds": "seconds", "jobs": "jobs"}[m.group(2)]
        if m.group(1) == "assoc":
            key = ("assoc", kind, l.get("account", ""), l.get("user", ""), l.get("partition", ""))
        else:
            key = ("qos", kind, l.get("qos", ""))
        if (l.get("limit"), kind) in {(lim, k) for k, lim in list(ASSOC_COLUMNS.values()) + list(QOS_COLUMNS.values())}:
            got[key + (l.get("limit"), l.get("tres", ""))] = v
    return got


def check_limits(exporter, timeout=120):
    """Association and QOS limits equal `sacctmgr show assoc|qos` (limits the
    scraper polls every --limits.poll-every polls)."""
    deadline = time.time() + timeout
    while True:
        want = sacctmgr_limits()
        got = exporter_limits(parse_metrics(http_get(exporter + "/metrics")))
        if got == want or time.time() > deadline:
            break
        time.sleep(2)
    report("limits set on the rig", len(want) > 0, f"{len(want)} limits in sacctmgr")
    return report("exporter limits == sacctmgr show assoc/qos", got == want,
                  f"missing {sorted(set(want) - set(got))} extra {sorted(set(got) - set(want))} "
                  f"differ {sorted(k for k in set(got) & set(want) if got[k] != want[k])}")


def prom_query(prom, expr):
    url = prom + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        body = json.loads(http_get(url, timeout=15))
    except urllib.error.HTTPError as e:
        body = json.loads(e.read().decode() or "{}")
    return body


BUILTINS = {
    "$__rate_interval": "1m", "${__rate_interval}": "1m", "$__interval": "30s",
    "${__interval}": "30s", "$__range": "10m", "${__range}": "10m", "$__range_s": "600",
    "$__range_ms": "600000",
}


def substitute(expr, values):
    """Grafana variables: built-ins, then each dashboard variable's value."""
    for k, v in BUILTINS.items():
        expr = expr.replace(k, v)
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)",
                  lambda m: values.get(m.group(1) or m.group(2), ".*"), expr)


def label_values(prom, query, values):
    """Values of a `label_values(selector, label)` variable query, as Grafana lists them."""
    m = re.match(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*$", query, re.S)
    if not m:
        return []
    selector = substitute(m.group(1), values)
    url = prom + "/api/v1/series?" + urllib.parse.urlencode({"match[]": selector})
    series = json.loads(http_get(url, timeout=15))["data"]
    return sorted({s[m.group(2)] for s in series if m.group(2) in s})


def dashboards(dash_dir):
    for path in sorted(glob.glob(os.path.join(dash_dir, "*.json"))):
        d = json.load(open(path))
        exprs = []
        panels = list(d.get("panels", []))
        while panels:
            p = panels.pop()
            panels.extend(p.get("panels", []))
            for t in p.get("targets", []):
                if t.get("expr"):
                    exprs.append((p.get("title", "?"), t["expr"]))
        yield os.path.basename(path), d.get("templating", {}).get("list", []), exprs


def data_count(prom, exprs, values):
    n = 0
    for _, expr in exprs:
        body = prom_query(prom, substitute(expr, values))
        n += body.get("status") == "success" and len(body["data"]["result"]) > 0
    return n


def choose_values(prom, variables, exprs):
    """Multi-value variables take "All" (.*); a single-value one (the job
    view's job id) takes the value of its own query that fills most panels,
    as a user would pick a running job."""
    values = {}
    for v in variables:
        if v.get("type") != "query":
            continue
        if v.get("multi") or v.get("includeAll"):
            values[v["name"]] = ".*"
            continue
        q = v.get("query")
        q = q.get("query", "") if isinstance(q, dict) else (q or "")
        best, best_n = None, -1
        for cand in label_values(prom, q, values)[:10]:
            n = data_count(prom, exprs, {**values, v["name"]: cand})
            if n > best_n:
                best, best_n = cand, n
        values[v["name"]] = best if best is not None else ".*"
    return values


def check_dashboards(prom, dash_dir, allow_empty):
    total = 0
    ok = True
    for dash, variables, exprs in dashboards(dash_dir):
        values = choose_values(prom, variables, exprs)
        chosen = {k: v for k, v in values.items() if v != ".*"}
        if chosen:
            print(f"  {dash}: variables {chosen}", flush=True)
        for title, expr in exprs:
            total += 1
            q = substitute(expr, values)
            body = prom_query(prom, q)
            if body.get("status") != "success":
                ok &= report(f"query runs: {dash} / {title}", False, f"{body.get('error')} :: {q}")
                continue
            n = len(body["data"]["result"])
            if n == 0 and any(re.search(a, title) for a in allow_empty):
                report(f"query runs: {dash} / {title}", True, "no data expected in this situation")
                continue
            ok &= report(f"query returns data: {dash} / {title}", n > 0, f"{n} series :: {q}")
    report("dashboards have queries", total > 0, f"{total} queries in {dash_dir}")
    return ok


def check_alerts(prom, want_firing, want_silent):
    alerts = json.loads(http_get(prom + "/api/v1/alerts"))["data"]["alerts"]
    firing = {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}
    ok = True
    for name in want_firing:
        ok &= report(f"alert firing: {name}", name in firing)
    for name in want_silent:
        ok &= report(f"alert silent: {name}", name not in firing)
    print(f"  firing now: {sorted(firing)}", flush=True)
    return ok


def check_targets(prom, expect_down, timeout=60):
    """Every target up, except those that stand for a dead exporter."""
    deadline = time.time() + timeout
    targets = []
    while time.time() < deadline:
        targets = json.loads(http_get(prom + "/api/v1/targets"))["data"]["activeTargets"]
        health = {t["labels"]["instance"]: t["health"] for t in targets}
        want = {i: ("down" if i in expect_down else "up") for i in health}
        if targets and health == want:
            return report("prometheus targets", True, f"{health}")
        time.sleep(1)
    return report("prometheus targets", False, json.dumps(targets)[:800])


def alert_firing(prom, name):
    alerts = json.loads(http_get(prom + "/api/v1/alerts"))["data"]["alerts"]
    return any(a["labels"]["alertname"] == name and a["state"] == "firing" for a in alerts)


def wait_alert(prom, name, firing, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if alert_firing(prom, name) == firing:
            return True
        time.sleep(1)
    return False


def metric_value(exporter, name):
    for n, _, v in parse_metrics(http_get(exporter + "/metrics")):
        if n == name:
            return v
    return None


def wait_metric(exporter, name, want, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        t0 = time.time()
        v = metric_value(exporter, name)
        if time.time() - t0 > 1.0:
            return False, "a scrape took over 1 s"
        if v == want:
            return True, f"{name}={v}"
        time.sleep(0.5)
    return False, f"{name} stayed {metric_value(exporter, name)} (want {want})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("phase", choices=["equality", "usage", "prometheus", "native", "restd-down", "restd-up",
                                      "ctld-down", "ctld-up", "token-expired", "token-renewed", "sreport",
                                      "limits", "alert-fired"])
    ap.add_argument("--exporter", default="http://127.0.0.1:19342")
    ap.add_argument("--release", default="22.05", help="Slurm major.minor under test")
    ap.add_argument("--sreport", default="sreport", help="sreport command (space-separated prefix)")
    ap.add_argument("--window", default="", help="START,END Unix seconds (sreport phase)")
    ap.add_argument("--prometheus", default="http://127.0.0.1:19090")
    ap.add_argument("--dashboards", default="dashboards")
    ap.add_argument("--firing", default="")
    ap.add_argument("--silent", default="")
    ap.add_argument("--dead-targets", default="127.0.0.1:19345")
    ap.add_argument("--allow-empty", default="", help="regexes of panel titles that may be empty here")
    args = ap.parse_args()
    split = lambda s: [x for x in s.split(",") if x]
    global SHARES
    SHARES = tuple(map(int, args.release.split(".")[:2])) >= (23, 2)
    if args.phase == "equality":
        check_equality(args.exporter)
    elif args.phase == "usage":
        check_usage(args.exporter, args.prometheus)
    elif args.phase == "prometheus":
        check_targets(args.prometheus, split(args.dead_targets))
        check_dashboards(args.prometheus, args.dashboards, split(args.allow_empty))
        check_alerts(args.prometheus, split(args.firing), split(args.silent))
    elif args.phase == "alert-fired":
        # ALERTS_FOR_STATE keeps when each alert started firing; compare with now.
        for name in split(args.firing):
            body = prom_query(args.prometheus, f'ALERTS{{alertname="{name}",alertstate="firing"}}')
            res = body.get("data", {}).get("result", []) if body.get("status") == "success" else []
            report(f"alert {name} is firing", len(res) > 0, str(res)[:300])
    elif args.phase == "limits":
        check_limits(args.exporter)
    elif args.phase == "sreport":
        start, end = (int(x) for x in args.window.split(","))
        check_sreport(args.exporter, args.sreport.split(), start, end)
    elif args.phase == "native":
        check_native(args.prometheus)
    elif args.phase == "ctld-down":
        # slurmrestd answers, slurmctld does not: the exporter says so and keeps the last data.
        ok, detail = wait_metric(args.exporter, "slurm_exporter_slurmrestd_up", 0.0, 90)
        report("slurmctld stopped: exporter reports the failing polls and keeps answering", ok, detail)
        jobs = metric_value(args.exporter, "slurm_cluster_jobs")
        report("slurmctld stopped: last good data still served", jobs is not None, f"present={jobs is not None}")
        errs = [(l, v) for n, l, v in parse_metrics(http_get(args.exporter + "/metrics"))
                if n == "slurm_exporter_errors_total" and l.get("endpoint") == "jobs"]
        report("slurmctld stopped: errors counted for /jobs", any(v > 0 for _, v in errs), f"{errs}")
    elif args.phase == "ctld-up":
        ok, detail = wait_metric(args.exporter, "slurm_exporter_slurmrestd_up", 1.0, 120)
        report("slurmctld restarted: exporter recovers", ok, detail)
        # slurmctld recomputes pending reasons after its restart; between full /jobs polls
        # the incremental ones follow states, not reasons (docs/performance.md), so compare
        # after the next full poll.
        full = lambda: sum(v for n, l, v in parse_metrics(http_get(args.exporter + "/metrics"))
                           if n == "slurm_exporter_jobs_polls_total" and l.get("kind") == "full")
        first, deadline = full(), time.time() + 120
        while full() <= first and time.time() < deadline:
            time.sleep(1)
        report("slurmctld restarted: a full /jobs poll followed", full() > first)
        check_equality(args.exporter)
    elif args.phase == "token-expired":
        ok, detail = wait_metric(args.exporter, "slurm_exporter_slurmrestd_up", 0.0, 60)
        report("expired token: exporter reports slurmrestd unusable and keeps answering", ok, detail)
        errs = {l.get("kind"): v for n, l, v in parse_metrics(http_get(args.exporter + "/metrics"))
                if n == "slurm_exporter_errors_total" and l.get("endpoint") == "jobs"}
        report("expired token: counted as an authentication error", errs.get("auth", 0) > 0, f"{errs}")
    elif args.phase == "token-renewed":
        ok, detail = wait_metric(args.exporter, "slurm_exporter_slurmrestd_up", 1.0, 60)
        report("renewed token: exporter recovers without a restart", ok, detail)
    elif args.phase == "restd-down":
        ok, detail = wait_metric(args.exporter, "slurm_exporter_slurmrestd_up", 0.0, 60)
        report("slurmrestd stopped: exporter reports it down and keeps answering", ok, detail)
        jobs = metric_value(args.exporter, "slurm_cluster_jobs")
        report("slurmrestd stopped: last good data still served", jobs is not None, f"slurm_cluster_jobs present={jobs is not None}")
        report("slurmrestd stopped: alert SlurmrestdDown fires", wait_alert(args.prometheus, "SlurmrestdDown", True))
    elif args.phase == "restd-up":
        ok, detail = wait_metric(args.exporter, "slurm_exporter_slurmrestd_up", 1.0, 90)
        report("slurmrestd restarted: exporter recovers", ok, detail)
        report("slurmrestd restarted: alert SlurmrestdDown resolves", wait_alert(args.prometheus, "SlurmrestdDown", False))
    failed = [n for n, ok in RESULTS if not ok]
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
