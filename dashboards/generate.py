#!/usr/bin/env python3
"""Generates the Grafana dashboards (dashboards/*.json) and their reference (docs/dashboards.md).

The dashboards are written in Python so that the filters, the layout and the documentation stay
consistent; the JSON files are committed, and tests/ops/check.sh fails when they differ from what this
script writes. Edit this file, then run `python3 dashboards/generate.py`.

Grafana 10+ schema. Every dashboard has a `datasource` variable (type datasource, Prometheus) and
the variables cluster, partition, account, user and node; the Job view adds job_id.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DS = {"type": "prometheus", "uid": "${datasource}"}
SCHEMA_VERSION = 39  # Grafana 10.4

# Label filters built from the template variables. The `cluster` label comes from target relabeling
# (docs/deploy.md); `=~".*"` (the All value) also matches series without it.
C = 'cluster=~"$cluster"'
CP = C + ',partition=~"$partition"'
CA = C + ',account=~"$account"'
CPAU = C + ',partition=~"$partition",account=~"$account",user=~"$user"'
CN = C + ',node=~"$node"'
JOB = C + ',job_id="$job_id"'
GPU_HOURS = 'slurm_account_tres_usage_seconds_total{' + CPAU + ',tres="gres/gpu"}'
# Money: the cost counter (usage × the --budgets price table), all priced TRES or GPUs only.
COST = 'slurm_account_tres_cost_total{' + CPAU + '}'
GPU_COST = 'slurm_account_tres_cost_total{' + CPAU + ',tres="gres/gpu"}'


def window_delta(counter: str) -> str:
    """What a counter added over the dashboard's time range, exactly and the
    same on Prometheus, Thanos, Mimir and VictoriaMetrics: the last sample in
    the range minus the last one before it (0 for a series born inside it).
    `increase()` extrapolates at the edges, differently per engine
    (docs/long-term-storage.md); the usage and cost counters are persisted
    by the scraper, so they do not reset."""
    return (f"(last_over_time({counter}[$__range]) - (last_over_time({counter}[31d] offset $__range)"
            f" or last_over_time({counter}[$__range]) * 0))")
EFA_NODE_BPS = (
    'rate(slurm_efa_port_rdma_read_bytes_total{' + C + '}[$__rate_interval])'
    ' + rate(slurm_efa_port_rdma_write_bytes_total{' + C + '}[$__rate_interval])'
)


# --------------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------------

def q(expr: str, legend: str = "", *, instant: bool = False, table: bool = False, interval: str = "") -> dict:
    t = {
        "datasource": DS,
        "expr": " ".join(expr.split()),
        "legendFormat": legend or "__auto",
        "range": not instant,
        "instant": instant,
        "editorMode": "code",
    }
    if table:
        t["format"] = "table"
    if interval:
        t["interval"] = interval
    return t


def thresholds(*steps: tuple[float | None, str]) -> dict:
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for v, c in steps]}


GREEN_ONLY = thresholds((None, "green"))
UTIL_THRESHOLDS = thresholds((None, "red"), (0.5, "orange"), (0.9, "green"))
BUDGET_THRESHOLDS = thresholds((None, "green"), (0.8, "orange"), (1, "red"))


class Panel:
    def __init__(self, kind: str, title: str, targets: list[dict], *, w: int = 12, h: int = 8,
                 unit: str = "short", desc: str = "", stack: bool = False, thresholds_: dict | None = None,
                 options: dict | None = None, overrides: list | None = None, transformations: list | None = None,
                 time_from: str = "", time_shift: str = "", decimals: int | None = None,
                 min_: float | None = None, max_: float | None = None, custom: dict | None = None,
                 mappings: list | None = None):
        self.kind, self.title, self.targets, self.w, self.h = kind, title, targets, w, h
        self.unit, self.desc, self.stack = unit, desc, stack
        self.thresholds = thresholds_ or GREEN_ONLY
        self.options = options or {}
        self.overrides = overrides or []
        self.transformations = transformations or []
        self.time_from, self.time_shift = time_from, time_shift
        self.decimals, self.min, self.max = decimals, min_, max_
        self.custom = custom or {}
        self.mappings = mappings or []

    def render(self, pid: int, x: int, y: int) -> dict:
        for i, t in enumerate(self.targets):
            t["refId"] = chr(ord("A") + i)
        defaults: dict = {"unit": self.unit, "thresholds": self.thresholds, "color": {"mode": "palette-classic"},
                          "mappings": self.mappings}
        if self.kind in ("stat", "bargauge", "gauge"):
            defaults["color"] = {"mode": "thresholds"}
        if self.decimals is not None:
            defaults["decimals"] = self.decimals
        if self.min is not None:
            defaults["min"] = self.min
        if self.max is not None:
            defaults["max"] = self.max
        custom = dict(self.custom)
        if self.kind == "timeseries":
            custom.setdefault("drawStyle", "line")
            custom.setdefault("lineWidth", 1)
            custom.setdefault("fillOpacity", 30 if self.stack else 10)
            custom.setdefault("showPoints", "never")
            custom["stacking"] = {"mode": "normal" if self.stack else "none", "group": "A"}
        if custom:
            defaults["custom"] = custom
        p = {
            "id": pid,
            "type": self.kind,
            "title": self.title,
            "description": self.desc,
            "datasource": DS,
            "gridPos": {"x": x, "y": y, "w": self.w, "h": self.h},
            "targets": self.targets,
            "fieldConfig": {"defaults": defaults, "overrides": self.overrides},
            "options": self.default_options() | self.options,
        }
        if self.transformations:
            p["transformations"] = self.transformations
        if self.time_from:
            p["timeFrom"] = self.time_from
        if self.time_shift:
            p["timeShift"] = self.time_shift
        return p

    def default_options(self) -> dict:
        if self.kind == "timeseries":
            return {"legend": {"displayMode": "table", "placement": "right", "showLegend": True,
                               "calcs": ["mean", "max"]},
                    "tooltip": {"mode": "multi", "sort": "desc"}}
        if self.kind == "stat":
            return {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "colorMode": "value", "graphMode": "area", "textMode": "auto", "justifyMode": "auto",
                    "orientation": "auto"}
        if self.kind == "piechart":
            return {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "pieType": "pie", "displayLabels": ["name", "percent"],
                    "legend": {"displayMode": "table", "placement": "right", "showLegend": True,
                               "values": ["value", "percent"]},
                    "tooltip": {"mode": "single", "sort": "none"}}
        if self.kind == "bargauge":
            return {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "orientation": "horizontal", "displayMode": "gradient", "showUnfilled": True,
                    "valueMode": "color", "namePlacement": "auto", "sizing": "auto"}
        if self.kind == "table":
            return {"showHeader": True, "cellHeight": "sm", "footer": {"show": False, "reducer": ["sum"],
                                                                      "fields": "", "countRows": False}}
        if self.kind == "barchart":
            return {"orientation": "auto", "stacking": "normal", "showValue": "never", "xTickLabelSpacing": 100,
                    "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "desc"}}
        return {}


class Row:
    def __init__(self, title: str):
        self.title = title


def merge_table(renames: dict[str, str], exclude: tuple[str, ...] = ("Time",), sort_by: str = "") -> list:
    """Instant table queries merged into one table, with `Value #A` ... renamed."""
    t = [
        {"id": "merge", "options": {}},
        {"id": "organize", "options": {"excludeByName": {k: True for k in exclude},
                                       "renameByName": renames, "indexByName": {}}},
    ]
    if sort_by:
        t.append({"id": "sortBy", "options": {"sort": [{"field": sort_by, "desc": True}]}})
    return t


def right_axis(ref: str, unit: str) -> dict:
    return {"matcher": {"id": "byFrameRefID", "options": ref},
            "properties": [{"id": "custom.axisPlacement", "value": "right"}, {"id": "unit", "value": unit}]}


def unit_override(column: str, unit: str, decimals: int | None = None) -> dict:
    props = [{"id": "unit", "value": unit}]
    if decimals is not None:
        props.append({"id": "decimals", "value": decimals})
    return {"matcher": {"id": "byName", "options": column}, "properties": props}


def var_query(name: str, label: str, query: str, *, multi: bool = True, include_all: bool = True,
              regex: str = "") -> dict:
    return {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": DS,
        "definition": query,
        "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery", "qryType": 1},
        "refresh": 2,  # on time range change
        "multi": multi,
        "includeAll": include_all,
        "allValue": ".*" if include_all else None,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]} if include_all else {},
        "regex": regex,
        "sort": 1,
        "hide": 0,
        "options": [],
    }


def variables(account_source: str = "slurm_cluster_jobs", extra: list | None = None) -> list:
    v = [
        {"type": "datasource", "name": "datasource", "label": "Data source", "query": "prometheus",
         "current": {}, "hide": 0, "refresh": 1, "regex": "", "includeAll": False, "multi": False,
         "options": []},
        var_query("cluster", "Cluster", "label_values(slurm_exporter_build_info, cluster)"),
        var_query("partition", "Partition", 'label_values(slurm_cluster_partition_nodes{cluster=~"$cluster"}, partition)'),
        var_query("account", "Account", f'label_values({account_source}{{cluster=~"$cluster"}}, account)'),
        var_query("user", "User",
                  'label_values(slurm_cluster_jobs_allocated_gpus{cluster=~"$cluster",account=~"$account"}, user)'),
        var_query("node", "Node", 'label_values(slurm_cluster_node_cpus{cluster=~"$cluster"}, node)'),
    ]
    return v + (extra or [])


def dashboard(uid: str, title: str, description: str, items: list, *, tags: list[str], time_from: str = "now-6h",
              time_to: str = "now", templating: list | None = None, links: bool = True) -> dict:
    panels, pid, x, y, row_h = [], 1, 0, 0, 0
    for it in items:
        if isinstance(it, Row):
            if x:
                y, x, row_h = y + row_h, 0, 0
            panels.append({"id": pid, "type": "row", "title": it.title, "collapsed": False,
                           "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}, "panels": []})
            pid, y = pid + 1, y + 1
            continue
        if x + it.w > 24:
            y, x, row_h = y + row_h, 0, 0
        panels.append(it.render(pid, x, y))
        pid, x, row_h = pid + 1, x + it.w, max(row_h, it.h)
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["slurm", "gpu", "slurm-gpu-exporter"] + tags,
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": "1m",
        "time": {"from": time_from, "to": time_to},
        "timepicker": {},
        "timezone": "",
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True,
            "hide": True, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts", "type": "dashboard"}]},
        "links": [{"type": "dashboards", "tags": ["slurm-gpu-exporter"], "asDropdown": True, "title": "Slurm GPU",
                   "includeVars": True, "keepTime": True, "icon": "external link", "targetBlank": False,
                   "tooltip": "", "url": ""}] if links else [],
        "templating": {"list": templating or variables()},
        "panels": panels,
    }


# --------------------------------------------------------------------------------------------------
# 1. GPU usage by account
# --------------------------------------------------------------------------------------------------

def limits_panels() -> list:
    """Slurm's limits and the runway rules (alerts/limits.yaml), on the GPU-by-account and monthly dashboards."""
    return [
        Row("Slurm limits and runway"),
        Panel("bargauge", "Quota use by account",
              [q('max by (account) (account:slurm_assoc_grp_tres_gpus_used:ratio{' + CA + '})',
                 "{{account}} GPUs / GrpTRES", instant=True),
               q('max by (account, tres) (account_tres:slurm_assoc_grp_tres_mins_used:ratio{' + CA + '})',
                 "{{account}} {{tres}} / GrpTRESMins", instant=True)],
              w=12, h=8, unit="percentunit", thresholds_=BUDGET_THRESHOLDS, min_=0, max_=1.2,
              desc="Use of the limits Slurm enforces on each account's own association: GPUs held by running "
                   "jobs over GrpTRES gres/gpu (Slurm holds GPU jobs with AssocGrpGRES at 100 %), and the "
                   "decayed usage Slurm counts (sshare GrpTRESRaw) over GrpTRESMins (AssocGrp*Minutes at "
                   "100 %). Accounts without such limits are absent."),
        Panel("bargauge", "Runway",
              [q('min by (account, tres) (account_tres:slurm_assoc_grp_tres_mins_runway:days{' + CA + '})',
                 "{{account}} {{tres}} Slurm GrpTRESMins", instant=True),
               q('min by (account, tres) (account_tres:slurm_budget_runway:days{' + CA + '})',
                 "{{account}} {{tres}} monthly budget", instant=True)],
              w=12, h=8, unit="d", decimals=1, min_=0, max_=30,
              thresholds_=thresholds((None, "red"), (1, "orange"), (3, "green")),
              desc="Days left at the burn rate of the last 24 h (rate of slurm_account_tres_usage_seconds_total): "
                   "until Slurm's GrpTRESMins is reached and it holds the account's jobs, and until the "
                   "monthly budget is spent. Alerts at 3 and 1 days (docs/alerts.md)."),
    ]


def gpu_usage_by_account() -> dict:
    alloc = 'slurm_cluster_jobs_allocated_gpus{' + CPAU + '}'
    # "How well": SM activity where the GPU has GPM, utilization otherwise (recording rules).
    util = 'node_gpu:slurm_gpu_activity_ratio:allocated{' + CPAU + '}'
    idle = 'node_gpu:slurm_gpu_utilization_ratio:allocated_max10m{' + CPAU + '} < 0.05'
    items = [
        Row("Now"),
        Panel("stat", "Allocated GPUs", [q(f"sum({alloc})", "allocated")], w=4, h=4,
              desc="GPUs held by running, suspended and completing jobs (allocated TRES gres/gpu)."),
        Panel("stat", "GPUs in the cluster", [q('sum(slurm_cluster_node_gpus{' + CN + '})', "configured")], w=4, h=4,
              desc="GPUs configured on the selected nodes (Slurm Gres)."),
        Panel("stat", "Share of GPUs allocated",
              [q('sum(slurm_cluster_node_allocated_gpus{' + CN + '}) / sum(slurm_cluster_node_gpus{' + CN + '})', "allocated")],
              w=4, h=4, unit="percentunit", decimals=1,
              desc="Allocated GPUs over configured GPUs, on the selected nodes."),
        Panel("stat", "Activity of allocated GPUs", [q(f"avg({util})", "activity")], w=4, h=4,
              unit="percentunit", decimals=1, thresholds_=UTIL_THRESHOLDS, min_=0, max_=1,
              desc="Mean activity of the GPUs held by jobs (node agent joined with slurm_job_gpus): "
                   "SM activity (NVML GPM, the fraction of time warps were resident on the SMs) where the GPU has it, NVML utilization (any kernel running) otherwise. Target: above 90 %."),
        Panel("stat", "Allocated GPUs idle (10 min)", [q(f"count({idle}) or vector(0)", "idle")], w=4, h=4,
              thresholds_=thresholds((None, "green"), (1, "orange")),
              desc="Allocated GPUs whose utilization stayed below 5 % over the last 10 minutes."),
        Panel("stat", "GPU-hours this month", [q(f"sum({window_delta(GPU_HOURS)}) / 3600", "GPU-hours",
                                                 instant=True)],
              w=4, h=4, unit="none", decimals=0, time_from="now/M",
              desc="Allocated GPU-hours since the start of the month (slurm_account_tres_usage_seconds_total, "
                   "tres=gres/gpu), as sreport counts them."),
        Row("Allocation by account"),
        Panel("piechart", "Allocated GPUs by account", [q(f"sum by (account) ({alloc})", "{{account}}",
                                                          instant=True)], w=8, h=9,
              desc="Current GPU allocation split by Slurm account."),
        Panel("timeseries", "Allocated GPUs by account", [q(f"sum by (account) ({alloc})", "{{account}}")],
              w=16, h=9, stack=True, desc="Stacked: the top of the stack is all allocated GPUs."),
        Panel("timeseries", "Allocated GPUs by user (top 10)",
              [q(f"topk(10, sum by (account, user) ({alloc}))", "{{account}} / {{user}}")], w=12, h=8,
              desc="The ten users holding the most GPUs at each point in time."),
        Panel("bargauge", "Budget used this month",
              [q('max by (account, tres) (slurm_account_budget_used_ratio{' + CA + '})', "{{account}} {{tres}}",
                 instant=True)], w=12, h=8, unit="percentunit", thresholds_=BUDGET_THRESHOLDS, min_=0, max_=1.2,
              desc="Share of the monthly TRES budget used this calendar month (slurm_account_budget_used_ratio); "
                   "orange from 80 %, red from 100 %."),
        *limits_panels(),
        Row("Activity of allocated GPUs"),
        Panel("timeseries", "GPU activity by account",
              [q('account:slurm_gpu_activity_ratio:avg{' + CA + '}', "{{account}}")], w=12, h=9,
              unit="percentunit", min_=0, max_=1,
              thresholds_=UTIL_THRESHOLDS, custom={"thresholdsStyle": {"mode": "line+area"}},
              desc="Mean activity of the GPUs each account holds (recording rule "
                   "account:slurm_gpu_activity_ratio:avg): SM activity (NVML GPM, the fraction of time warps were resident on the SMs) where the GPU has it, NVML utilization (any kernel running) otherwise. Users aim for above 90 %."),
        Panel("timeseries", "Allocated but idle GPUs by account",
              [q(f"count by (account) ({idle})", "{{account}}")], w=12, h=9, stack=True,
              desc="Allocated GPUs below 5 % utilization over the last 10 minutes, by account. "
                   "Alert SlurmGPUsAllocatedIdle fires after 30 minutes."),
        Panel("timeseries", "Cost of allocated but idle GPUs per hour",
              [q('sum by (account, currency) (account:slurm_gpus_allocated_idle_cost_per_second:sum{' + CA + '}) * 3600',
                 "{{account}} ({{currency}})")], w=12, h=9, stack=True, decimals=2,
              desc="Money per hour spent on allocated GPUs idle for the last 10 minutes: their count × the price "
                   "per GPU-hour the holder pays (recording rule account:slurm_gpus_allocated_idle_cost_per_second:sum, "
                   "from the cost counter and the node agent's utilization). Empty without prices in --budgets."),
        Panel("table", "Allocated but idle GPUs now",
              [q(idle, instant=True, table=True)], w=12, h=9, unit="percentunit",
              transformations=merge_table({"Value": "max utilization (10 min)"},
                                          exclude=("Time", "__name__", "cluster")),
              desc="Every allocated GPU idle for the last 10 minutes, with its job, user and node."),
        Panel("table", "Activity by account and user",
              [q(f"avg by (account, user) ({util})", instant=True, table=True),
               q(f"count by (account, user) ({util})", instant=True, table=True)],
              w=12, h=9, transformations=merge_table({"Value #A": "activity", "Value #B": "GPUs"},
                                                     sort_by="GPUs"),
              overrides=[unit_override("activity", "percentunit", 1)],
              desc="Mean activity (SM activity where present, utilization otherwise) and count of the GPUs "
                   "each user holds."),
        Panel("table", "Jobs below 90 % GPU activity",
              [q('sort(job:slurm_gpu_activity_ratio:avg{' + CPAU + '} < 0.9)', instant=True, table=True),
               q('count by (job_id) (' + util + ')', instant=True, table=True)],
              w=24, h=8, transformations=merge_table({"Value #A": "activity", "Value #B": "GPUs"},
                                                     exclude=("Time", "__name__", "cluster")),
              overrides=[unit_override("activity", "percentunit", 1)],
              desc="Running jobs whose GPUs average below the 90 % target (recording rule "
                   "job:slurm_gpu_activity_ratio:avg; SM activity where present, utilization otherwise). "
                   "Jobs whose every GPU stays below 5 % raise SlurmJobGpusIdle; `job-report <id>` "
                   "summarizes one job."),
        Row("GPU-hours"),
        Panel("table", "GPU-hours and GPU cost this month by account and user",
              [q(f"sum by (account, user) ({window_delta(GPU_HOURS)}) / 3600", instant=True, table=True),
               q(f"sum by (account, user) ({window_delta(GPU_COST)})", instant=True, table=True)],
              w=12, h=10, time_from="now/M",
              transformations=merge_table({"Value #A": "GPU-hours", "Value #B": "GPU cost"}, sort_by="GPU-hours"),
              overrides=[unit_override("GPU-hours", "none", 1), unit_override("GPU cost", "none", 2)],
              desc="Allocated GPU-hours since the start of the calendar month, per account and user "
                   "(sreport cluster AccountUtilizationByUser for gres/gpu), and their cost in the currency of "
                   "the --budgets price table (slurm_account_tres_cost_total, tres=gres/gpu)."),
        Panel("timeseries", "GPU-hours per day by account",
              [q('account:slurm_gpu_hours:increase1d{' + CA + '}', "{{account}}", interval="1d")],
              w=12, h=10, unit="none", stack=True, custom={"drawStyle": "bars", "fillOpacity": 80},
              time_from="now-30d",
              desc="GPU-hours over the 24 hours before each point (recording rule account:slurm_gpu_hours:increase1d)."),
        Panel("bargauge", "GPU-hours over the last 30 days by account",
              [q('sort_desc(account:slurm_gpu_hours:increase30d{' + CA + '})', "{{account}}", instant=True)],
              w=24, h=8, unit="none", decimals=0,
              desc="Rolling 30 days (recording rule account:slurm_gpu_hours:increase30d)."),
    ]
    return dashboard("slurm-gpu-usage-by-account", "Slurm GPU usage by account",
                     "Who holds the GPUs, how well they use them, and how much of their budget is left.",
                     items, tags=["accounting"])


# --------------------------------------------------------------------------------------------------
# 2. Cluster overview
# --------------------------------------------------------------------------------------------------

def cluster_overview() -> dict:
    jobs = 'slurm_cluster_jobs{' + CP + ',account=~"$account"}'
    pend = 'slurm_cluster_jobs_pending{' + CP + ',account=~"$account"}'
    items = [
        Row("Summary"),
        Panel("stat", "Running jobs", [q('sum(slurm_cluster_jobs{' + CP + ',account=~"$account",state="running"})', "running")], w=4, h=4),
        Panel("stat", "Pending jobs", [q('sum(slurm_cluster_jobs{' + CP + ',account=~"$account",state="pending"})', "pending")], w=4, h=4,
              desc="Array tasks counted individually, as squeue -r counts them."),
        Panel("stat", "Nodes down or drained",
              [q('count(max by (cluster, node) (slurm_cluster_node_state_info{' + CN + ',state=~"down|error"}'
                 ' or slurm_cluster_node_state_info{' + CN + ',flags=~".*DRAIN.*"})) or vector(0)', "nodes")],
              w=4, h=4, thresholds_=thresholds((None, "green"), (1, "orange"))),
        Panel("stat", "GPUs allocated",
              [q('sum(slurm_cluster_node_allocated_gpus{' + CN + '}) / sum(slurm_cluster_node_gpus{' + CN + '})', "allocated")],
              w=4, h=4, unit="percentunit", decimals=1),
        Panel("stat", "slurmrestd", [q('min(slurm_exporter_slurmrestd_up{' + C + '})', "up")], w=4, h=4,
              thresholds_=thresholds((None, "red"), (1, "green")),
              mappings=[{"type": "value", "options": {"0": {"text": "failing", "color": "red"},
                                                      "1": {"text": "up", "color": "green"}}}],
              desc="1 when every enabled slurmrestd endpoint answered on the last poll."),
        Panel("stat", "Scheduler cycle (last)", [q('max(slurm_scheduler_cycle_last_seconds{' + C + '})', "last")],
              w=4, h=4, unit="s", thresholds_=thresholds((None, "green"), (1, "orange"), (5, "red"))),
        Row("Queue"),
        Panel("timeseries", "Jobs by state", [q(f"sum by (state) ({jobs})", "{{state}}")], w=12, h=8,
              desc="Finished jobs stay until slurmctld purges them (MinJobAge)."),
        Panel("timeseries", "Pending jobs by reason", [q(f"sum by (reason) ({pend})", "{{reason}}")], w=12, h=8,
              stack=True),
        Panel("table", "Pending jobs by partition and reason",
              [q(f"sum by (partition, reason) ({pend}) > 0", instant=True, table=True)], w=12, h=8,
              transformations=merge_table({"Value": "jobs"}, sort_by="jobs")),
        Panel("timeseries", "Running and pending jobs by partition",
              [q('sum by (partition, state) (slurm_cluster_partition_jobs{' + CP + '})', "{{partition}} {{state}}")],
              w=12, h=8),
        Row("Nodes"),
        Panel("timeseries", "Nodes by state", [q('sum by (state) (slurm_cluster_nodes{' + C + '})', "{{state}}")],
              w=12, h=8, stack=True),
        Panel("timeseries", "Nodes by state flag",
              [q('sum by (flag) (slurm_cluster_nodes_with_flag{' + C + '}) > 0', "{{flag}}")], w=12, h=8),
        Panel("table", "Nodes down, drained or not responding",
              [q('slurm_cluster_node_state_info{' + CN + ',state=~"down|error|unknown"}'
                 ' or slurm_cluster_node_state_info{' + CN + ',flags=~".*(DRAIN|NOT_RESPONDING|FAIL).*"}',
                 instant=True, table=True)],
              w=24, h=8, transformations=merge_table({}, exclude=("Time", "Value", "__name__", "instance", "job",
                                                                   "namespace", "pod", "service", "endpoint",
                                                                   "container"))),
        Row("Partitions"),
        Panel("bargauge", "GPU allocation by partition",
              [q('sum by (partition) (slurm_cluster_partition_allocated_gpus{' + CP + '})'
                 ' / sum by (partition) (slurm_cluster_partition_gpus{' + CP + '} > 0)', "{{partition}}", instant=True)],
              w=8, h=8, unit="percentunit", min_=0, max_=1,
              thresholds_=thresholds((None, "green"), (0.8, "orange"), (0.95, "red"))),
        Panel("timeseries", "GPUs per partition: allocated and configured",
              [q('sum by (partition) (slurm_cluster_partition_allocated_gpus{' + CP + '})', "{{partition}} allocated"),
               q('sum by (partition) (slurm_cluster_partition_gpus{' + CP + '})', "{{partition}} configured")], w=8, h=8),
        Panel("timeseries", "CPUs per partition: allocated and configured",
              [q('sum by (partition) (slurm_cluster_partition_allocated_cpus{' + CP + '})', "{{partition}} allocated"),
               q('sum by (partition) (slurm_cluster_partition_cpus{' + CP + '})', "{{partition}} configured")], w=8, h=8),
        Panel("table", "Fairshare by account",
              [q('max by (account, parent) (slurm_share_fairshare_factor{' + CA + ',user=""})', instant=True,
                 table=True),
               q('max by (account, parent) (slurm_share_effective_usage_ratio{' + CA + ',user=""})', instant=True,
                 table=True),
               q('max by (account, parent) (slurm_share_normalized_shares_ratio{' + CA + ',user=""})',
                 instant=True, table=True)],
              w=24, h=8, transformations=merge_table({"Value #A": "fairshare (LevelFS)", "Value #B": "effective usage",
                                                      "Value #C": "normalized shares"}),
              overrides=[unit_override("effective usage", "percentunit", 1),
                         unit_override("normalized shares", "percentunit", 1)],
              desc="sshare account rows; empty on Slurm 22.05 (no /shares endpoint)."),
        Row("Scheduler"),
        Panel("timeseries", "Main scheduling cycle",
              [q('max(slurm_scheduler_cycle_last_seconds{' + C + '})', "last"),
               q('max(slurm_scheduler_cycle_mean_seconds{' + C + '})', "mean"),
               q('max(slurm_scheduler_cycle_max_seconds{' + C + '})', "max")], w=8, h=8, unit="s",
              desc="From sdiag; mean and max since the last statistics reset (midnight)."),
        Panel("timeseries", "Backfill cycle",
              [q('max(slurm_scheduler_backfill_cycle_last_seconds{' + C + '})', "last"),
               q('max(slurm_scheduler_backfill_cycle_mean_seconds{' + C + '})', "mean"),
               q('max(slurm_scheduler_backfill_last_depth{' + C + '})', "depth (jobs)")], w=8, h=8, unit="s",
              overrides=[right_axis("C", "short")]),
        Panel("timeseries", "Job throughput",
              [q('sum(rate(slurm_scheduler_jobs_submitted_total{' + C + '}[$__rate_interval])) * 60', "submitted"),
               q('sum(rate(slurm_scheduler_jobs_started_total{' + C + '}[$__rate_interval])) * 60', "started"),
               q('sum(rate(slurm_scheduler_backfilled_jobs_total{' + C + '}[$__rate_interval])) * 60', "backfilled"),
               q('sum(rate(slurm_scheduler_jobs_completed_total{' + C + '}[$__rate_interval])) * 60', "completed"),
               q('sum(rate(slurm_scheduler_jobs_failed_total{' + C + '}[$__rate_interval])) * 60', "failed")],
              w=8, h=8, unit="none", desc="Jobs per minute."),
        Panel("timeseries", "slurmctld threads and queues",
              [q('max(slurm_scheduler_threads{' + C + '})', "server threads"),
               q('max(slurm_scheduler_agent_queue_size{' + C + '})', "agent queue"),
               q('max(slurm_scheduler_dbd_agent_queue_size{' + C + '})', "slurmdbd queue"),
               q('max(slurm_scheduler_queue_length{' + C + '})', "main queue"),
               q('max(slurm_scheduler_backfill_queue_length{' + C + '})', "backfill queue")], w=8, h=8),
        Panel("timeseries", "RPC time by type (top 10)",
              [q('topk(10, sum by (rpc) (rate(slurm_scheduler_rpc_duration_seconds_total{' + C
                 + '}[$__rate_interval])))', "{{rpc}}")], w=8, h=8, unit="percentunit",
              desc="Seconds of slurmctld time per second spent on each RPC type."),
        Panel("timeseries", "RPCs by user (top 10)",
              [q('topk(10, sum by (user) (rate(slurm_scheduler_user_rpcs_total{' + C + '}[$__rate_interval])))',
                 "{{user}}")], w=8, h=8, unit="reqps"),
        Row("Exporter"),
        Panel("timeseries", "slurmrestd endpoints up",
              [q('min by (endpoint) (slurm_exporter_endpoint_up{' + C + '})', "{{endpoint}}")], w=8, h=8,
              min_=0, max_=1),
        Panel("timeseries", "Poll duration by endpoint",
              [q('max by (endpoint) (slurm_exporter_poll_duration_seconds{' + C + '})', "{{endpoint}}")],
              w=8, h=8, unit="s"),
        Panel("timeseries", "Poll errors by endpoint and kind",
              [q('sum by (endpoint, kind) (increase(slurm_exporter_errors_total{' + C + '}[$__rate_interval]))'
                 ' > 0', "{{endpoint}} {{kind}}")], w=8, h=8, custom={"drawStyle": "bars", "fillOpacity": 80}),
        Panel("timeseries", "slurmrestd polls by kind",
              [q('sum by (kind) (increase(slurm_exporter_jobs_polls_total{' + C + '}[$__rate_interval]))',
                 "/jobs {{kind}}"),
               q('sum by (kind) (increase(slurm_exporter_nodes_polls_total{' + C + '}[$__rate_interval]))',
                 "/nodes {{kind}}")], w=8, h=8, custom={"drawStyle": "bars", "fillOpacity": 80, "stacking": {"mode": "normal"}},
              desc="full: the whole list fetched; unchanged: slurmctld said nothing changed since update_time; "
                   "incremental: /jobs/state diffed and changed jobs re-fetched. Mostly full /jobs polls on "
                   "API v0.0.40+ means incremental polling keeps falling back (SlurmExporterJobsPollsMostlyFull)."),
        Panel("timeseries", "Age of the data by endpoint",
              [q('time() - max by (endpoint) (slurm_exporter_last_success_timestamp_seconds{' + C + '})',
                 "{{endpoint}}")], w=8, h=8, unit="s",
              desc="Seconds since the last successful poll; data older than --max-data-age is dropped."),
        Panel("timeseries", "Scrape targets up",
              [q('sum by (job) (up{' + C + ',job=~"slurm-gpu-exporter.*"})', "{{job}} up"),
               q('count by (job) (up{' + C + ',job=~"slurm-gpu-exporter.*"} == 0)', "{{job}} down")], w=8, h=8),
        Panel("table", "Node agent collectors failing",
              [q('slurm_node_collector_up{' + CN + '} == 0', instant=True, table=True)], w=8, h=8,
              transformations=merge_table({}, exclude=("Time", "Value", "__name__")),
              desc="Collectors of the node agent whose last run failed (NVML, EFA, memlock, ...)."),
        Panel("table", "Versions",
              [q('max by (version) (slurm_exporter_build_info{' + C + '})', instant=True, table=True),
               q('max by (version) (slurm_exporter_api_version_info{' + C + '})', instant=True, table=True)],
              w=8, h=5, transformations=[{"id": "merge", "options": {}}, {
                  "id": "organize", "options": {"excludeByName": {"Time": True, "Value #A": True, "Value #B": True},
                                                "renameByName": {}, "indexByName": {}}}],
              desc="Exporter build (A) and slurmrestd API version in use (B)."),
    ]
    return dashboard("slurm-cluster-overview", "Slurm cluster overview",
                     "Queue, nodes, partitions, scheduler and exporter health.", items, tags=["overview"])


# --------------------------------------------------------------------------------------------------
# 3. Node, GPU and EFA health
# --------------------------------------------------------------------------------------------------

def node_health() -> dict:
    g = '{' + CN + '}'
    items = [
        Row("GPUs"),
        Panel("stat", "GPUs reporting", [q('count(slurm_gpu_up' + g + ' == 1) or vector(0)', "up")], w=6, h=4),
        Panel("stat", "GPUs lost", [q('count(slurm_gpu_up' + g + ' == 0) or vector(0)', "lost")], w=6, h=4,
              thresholds_=thresholds((None, "green"), (1, "red"))),
        Panel("stat", "Mean GPU utilization", [q('avg(slurm_gpu_utilization_ratio' + g + ')', "utilization")],
              w=6, h=4, unit="percentunit", decimals=1, thresholds_=UTIL_THRESHOLDS),
        Panel("stat", "GPU power", [q('sum(slurm_gpu_power_watts' + g + ')', "power")], w=6, h=4, unit="watt"),
        Panel("timeseries", "GPU utilization", [q('slurm_gpu_utilization_ratio' + g, "{{node}} GPU {{gpu}}")],
              w=12, h=9, unit="percentunit", min_=0, max_=1),
        Panel("timeseries", "GPU memory used",
              [q('slurm_gpu_memory_used_bytes' + g + ' / slurm_gpu_memory_total_bytes' + g, "{{node}} GPU {{gpu}}")],
              w=12, h=9, unit="percentunit", min_=0, max_=1),
        Panel("timeseries", "GPU power", [q('slurm_gpu_power_watts' + g, "{{node}} GPU {{gpu}}")], w=12, h=9,
              unit="watt"),
        Panel("timeseries", "GPU temperature", [q('slurm_gpu_temperature_celsius' + g, "{{node}} GPU {{gpu}}")],
              w=12, h=9, unit="celsius"),
        Panel("timeseries", "Energy per node",
              [q('sum by (node) (increase(slurm_gpu_energy_joules_total' + g + '[$__rate_interval])) / 3.6e6',
                 "{{node}}")], w=12, h=8, unit="kwatth",
              desc="GPU energy per interval (NVML total energy), kWh."),
        Panel("timeseries", "Throttle reasons active",
              [q('sum by (node, reason) (slurm_gpu_clock_event_active{' + CN + ',reason!~"gpu_idle|applications_clocks_setting|display_clock_setting"}) > 0',
                 "{{node}} {{reason}}")], w=12, h=8,
              desc="GPUs per node with each NVML clock-event reason active. sw_power_cap is normal at full load; "
                   "thermal and hw_power_brake_slowdown are not."),
        Row("GPU errors"),
        Panel("timeseries", "XID errors (count since the agent started)",
              [q('sum by (node, gpu, xid) (slurm_gpu_xid_errors_total' + g + ')', "{{node}} GPU {{gpu}} XID {{xid}}")],
              w=12, h=8, custom={"drawStyle": "line", "lineInterpolation": "stepAfter"}, decimals=0,
              desc="The agent creates a counter at the first XID of a code on a GPU, so a step from nothing "
                   "is an XID too."),
        Panel("table", "XID errors seen in the time range",
              [q('sum by (node, gpu, xid) (max_over_time(slurm_gpu_xid_errors_total' + g + '[$__range]))',
                 instant=True, table=True)], w=12, h=8,
              transformations=merge_table({"Value": "count since agent start"}, sort_by="count since agent start"),
              decimals=0),
        Panel("timeseries", "ECC errors",
              [q('sum by (node, gpu, error_type) (increase(slurm_gpu_ecc_errors_total{' + CN
                 + ',counter="volatile"}[$__rate_interval])) > 0', "{{node}} GPU {{gpu}} {{error_type}}")],
              w=12, h=8, custom={"drawStyle": "bars", "fillOpacity": 80},
              desc="Volatile ECC counters (since driver load)."),
        Panel("table", "GPU memory health: uncorrectable ECC, row remapping",
              [q('sum by (node, gpu) (slurm_gpu_ecc_errors_total{' + CN + ',error_type="uncorrected",counter="aggregate"})'
                 ' > 0', instant=True, table=True),
               q('max by (node, gpu) (slurm_gpu_row_remap_pending' + g + ') > 0', instant=True, table=True),
               q('max by (node, gpu) (slurm_gpu_row_remap_failure' + g + ') > 0', instant=True, table=True)],
              w=12, h=8, decimals=0,
              transformations=merge_table({"Value #A": "uncorrected ECC (lifetime)", "Value #B": "remap pending",
                                           "Value #C": "remap failure"}),
              desc="GPUs with lifetime uncorrectable ECC errors, a pending row remap (needs a GPU reset) or a "
                   "failed row remap (needs replacement)."),
        Panel("table", "GPUs not answering NVML",
              [q('slurm_gpu_up' + g + ' == 0', instant=True, table=True)], w=12, h=8,
              transformations=merge_table({}, exclude=("Time", "Value", "__name__"))),
        Row("EFA"),
        Panel("timeseries", "EFA RDMA read throughput",
              [q('sum by (node) (rate(slurm_efa_port_rdma_read_bytes_total' + g + '[$__rate_interval]))',
                 "{{node}}")], w=12, h=8, unit="Bps"),
        Panel("timeseries", "EFA RDMA write throughput",
              [q('sum by (node) (rate(slurm_efa_port_rdma_write_bytes_total' + g + '[$__rate_interval]))',
                 "{{node}}")], w=12, h=8, unit="Bps"),
        Panel("timeseries", "EFA receive drops",
              [q('sum by (node, device) (rate(slurm_efa_port_rx_drops_total' + g + '[$__rate_interval])) > 0',
                 "{{node}} {{device}}")], w=12, h=8, unit="pps"),
        Panel("timeseries", "EFA retransmit timeouts",
              [q('sum by (node, device) (increase(slurm_efa_port_retrans_timeout_events_total' + g
                 + '[$__rate_interval])) > 0', "{{node}} {{device}}")], w=12, h=8,
              custom={"drawStyle": "bars", "fillOpacity": 80}),
        Panel("timeseries", "EFA unresponsive remote events",
              [q('sum by (node, device) (increase(slurm_efa_port_unresponsive_remote_events_total' + g
                 + '[$__rate_interval])) > 0', "{{node}} {{device}}")], w=12, h=8,
              custom={"drawStyle": "bars", "fillOpacity": 80}),
        Panel("timeseries", "EFA impaired remote connection events",
              [q('sum by (node, device) (increase(slurm_efa_port_impaired_remote_conn_events_total' + g
                 + '[$__rate_interval])) > 0', "{{node}} {{device}}")], w=12, h=8,
              custom={"drawStyle": "bars", "fillOpacity": 80}),
        Row("Jobs on the nodes"),
        Panel("table", "Memlock limits per job",
              [q('min by (node, job_id) (slurm_job_memlock_soft_limit_bytes' + g + ')', instant=True, table=True),
               q('min by (node, job_id) (slurm_job_memlock_hard_limit_bytes' + g + ')', instant=True, table=True)],
              w=12, h=9, unit="bytes",
              transformations=merge_table({"Value #A": "soft limit (min over tasks)",
                                           "Value #B": "hard limit (min over tasks)"}),
              desc="Smallest RLIMIT_MEMLOCK among each job's processes; EFA needs unlimited (shown as +Inf)."),
        Panel("table", "GPUs by job",
              [q('slurm_gpu_job_info' + g, instant=True, table=True)], w=12, h=9,
              transformations=merge_table({}, exclude=("Time", "Value", "__name__")),
              desc="Node agent's attribution of GPU processes to Slurm jobs."),
    ]
    return dashboard("slurm-node-gpu-efa-health", "Slurm node, GPU and EFA health",
                     "Per-node GPU utilization, power, temperature, memory, errors, EFA fabric and job limits.",
                     items, tags=["nodes"])


# --------------------------------------------------------------------------------------------------
# 4. Job view
# --------------------------------------------------------------------------------------------------

def job_view() -> dict:
    jg = 'node_gpu:slurm_job_gpus:max{' + JOB + '}'
    per_gpu = ' * on (cluster, node, gpu) group_left (job_id) ' + jg
    on_job_nodes = ' and on (cluster, node) ' + jg
    util = 'node_gpu:slurm_gpu_activity_ratio:allocated{' + JOB + '}'
    efa = f'sum(({EFA_NODE_BPS}){on_job_nodes})'
    items = [
        Row("Job $job_id"),
        Panel("stat", "GPUs", [q('sum(slurm_job_gpus{' + JOB + '})', "GPUs")], w=4, h=4),
        Panel("stat", "Nodes", [q('count(count by (node) (slurm_job_gpus{' + JOB + '}))', "nodes")], w=4, h=4),
        Panel("stat", "GPU activity",
              [q('max(job:slurm_gpu_activity_ratio:avg{' + JOB + '})', "activity")], w=4, h=4,
              unit="percentunit",
              decimals=1, thresholds_=UTIL_THRESHOLDS, min_=0, max_=1,
              desc="Mean over the job's GPUs of SM activity (NVML GPM, the fraction of time warps were resident on the SMs) where the GPU has it, NVML utilization (any kernel running) otherwise. Target: above 90 %."),
        Panel("stat", "GPU power", [q('sum(slurm_gpu_power_watts{' + C + '}' + per_gpu + ')', "power")], w=4, h=4,
              unit="watt"),
        Panel("stat", "GPU energy in the time range",
              [q('sum(increase(slurm_gpu_energy_joules_total{' + C + '}[$__range])' + per_gpu + ') / 3.6e6',
                 "energy", instant=True)], w=4, h=4, unit="kwatth"),
        Panel("stat", "EFA throughput on its nodes", [q(efa, "EFA")], w=4, h=4, unit="Bps",
              desc="RDMA read + write of the job's nodes; includes other jobs sharing those nodes."),
        Panel("table", "GPUs held by the job",
              [q('slurm_job_gpus{' + JOB + '}', instant=True, table=True),
               q('max by (node, gpu) (' + util + ')', instant=True, table=True)], w=24, h=7,
              transformations=merge_table({"Value #A": "GPUs", "Value #B": "activity"},
                                          exclude=("Time", "__name__", "instance", "job", "pod", "namespace",
                                                   "service", "endpoint", "container")),
              overrides=[unit_override("activity", "percentunit", 1)]),
        Row("GPUs"),
        Panel("timeseries", "GPU activity per GPU",
              [q(util, "{{node}} GPU {{gpu}}"),
               q('slurm_job_gpu_utilization_ratio{' + JOB + '}', "node agent utilization: {{node}}")],
              w=12, h=9, unit="percentunit", min_=0, max_=1, thresholds_=UTIL_THRESHOLDS,
              custom={"thresholdsStyle": {"mode": "line"}},
              desc="A: per GPU, from the cluster scraper's allocation: SM activity (NVML GPM) where the GPU "
                   "has it, NVML utilization otherwise; B: the node agent's per-job utilization, from the "
                   "processes it attributes to the job."),
        Panel("timeseries", "GPU power per GPU",
              [q('slurm_gpu_power_watts{' + C + '}' + per_gpu, "{{node}} GPU {{gpu}}")], w=12, h=9, unit="watt"),
        Panel("timeseries", "GPU memory used per GPU",
              [q('slurm_gpu_memory_used_bytes{' + C + '}' + per_gpu, "{{node}} GPU {{gpu}}")], w=12, h=9,
              unit="bytes"),
        Panel("timeseries", "GPU temperature per GPU",
              [q('slurm_gpu_temperature_celsius{' + C + '}' + per_gpu, "{{node}} GPU {{gpu}}")], w=12, h=9,
              unit="celsius"),
        Row("Communication"),
        Panel("timeseries", "GPU activity against EFA throughput",
              [q(f"avg({util})", "GPU activity"), q(efa, "EFA RDMA read+write")], w=24, h=10,
              unit="percentunit", overrides=[right_axis("B", "Bps")], min_=0,
              desc="Communication-bound: GPU activity drops while EFA throughput is high, or both drop "
                   "together in lock-step (waiting on collectives). Compute-bound: activity above 90 % "
                   "with short EFA bursts. Activity: SM activity where present, utilization otherwise."),
        Panel("timeseries", "EFA RDMA throughput per node",
              [q('sum by (node) (rate(slurm_efa_port_rdma_read_bytes_total{' + C + '}[$__rate_interval])'
                 + on_job_nodes + ')', "{{node}} read"),
               q('sum by (node) (rate(slurm_efa_port_rdma_write_bytes_total{' + C + '}[$__rate_interval])'
                 + on_job_nodes + ')', "{{node}} write")], w=12, h=8, unit="Bps"),
        Panel("timeseries", "EFA errors on its nodes",
              [q('sum by (node) (increase(slurm_efa_port_rx_drops_total{' + C + '}[$__rate_interval])'
                 + on_job_nodes + ')', "{{node}} drops"),
               q('sum by (node) (increase(slurm_efa_port_retrans_timeout_events_total{' + C
                 + '}[$__rate_interval])' + on_job_nodes + ')', "{{node}} retransmit timeouts"),
               q('sum by (node) (increase(slurm_efa_port_impaired_remote_conn_events_total{' + C
                 + '}[$__rate_interval])' + on_job_nodes + ')', "{{node}} impaired remote")], w=12, h=8),
        Row("Limits and errors"),
        Panel("table", "Memlock limits",
              [q('min by (node) (slurm_job_memlock_soft_limit_bytes{' + JOB + '})', instant=True, table=True),
               q('min by (node) (slurm_job_memlock_hard_limit_bytes{' + JOB + '})', instant=True, table=True)],
              w=12, h=7, unit="bytes",
              transformations=merge_table({"Value #A": "soft limit", "Value #B": "hard limit"}),
              desc="Smallest RLIMIT_MEMLOCK among the job's processes on each node; EFA needs unlimited (+Inf)."),
        Panel("table", "XID errors on its GPUs in the time range",
              [q('sum by (node, gpu, xid) (max_over_time(slurm_gpu_xid_errors_total{' + C + '}[$__range])'
                 + per_gpu + ')', instant=True, table=True)], w=12, h=7,
              transformations=merge_table({"Value": "count since agent start"}),
              desc="XID counters of the job's GPUs (counted since the node agent started)."),
    ]
    job_var = var_query("job_id", "Job ID",
                        'label_values(slurm_job_gpus{cluster=~"$cluster",partition=~"$partition",'
                        'account=~"$account",user=~"$user"}, job_id)', multi=False, include_all=False)
    return dashboard("slurm-job-view", "Slurm job view",
                     "One job's GPUs, utilization, power, EFA traffic and memlock: is it communication-bound?",
                     items, tags=["jobs"], time_from="now-3h", templating=variables(extra=[job_var]))


# --------------------------------------------------------------------------------------------------
# 5. Monthly usage
# --------------------------------------------------------------------------------------------------

USAGE = 'slurm_account_tres_usage_seconds_total{' + CPAU + ',tres="%s"}'
TRES_COLUMNS = [("gres/gpu", "GPU-hours", "/ 3600"), ("cpu", "CPU-hours", "/ 3600"),
                ("mem", "Memory (GB-hours)", "/ 3600 / 1024"), ("billing", "Billing-hours", "/ 3600")]


def usage_table(title: str, by: str, desc: str, time_shift: str = "") -> Panel:
    targets = [q(f"sum by ({by}) ({window_delta(USAGE % tres)}) {div}", instant=True, table=True)
               for tres, _, div in TRES_COLUMNS]
    renames = {f"Value #{chr(ord('A') + i)}": col for i, (_, col, _) in enumerate(TRES_COLUMNS)}
    return Panel("table", title, targets, w=12, h=11, time_shift=time_shift,
                 transformations=merge_table(renames, sort_by="GPU-hours"),
                 overrides=[unit_override(col, "none", 1) for _, col, _ in TRES_COLUMNS],
                 options={"footer": {"show": True, "reducer": ["sum"], "fields": "", "countRows": False}},
                 desc=desc)


def money_table(title: str, by: str) -> Panel:
    targets = [q(f"sum by ({by}) ({window_delta(COST)})", instant=True, table=True),
               q(f"sum by ({by}) ({window_delta(GPU_COST)})", instant=True, table=True),
               q(f"sum by ({by}) ({window_delta(GPU_HOURS)}) / 3600", instant=True, table=True)]
    cols = {"Value #A": "Cost", "Value #B": "GPU cost", "Value #C": "GPU-hours"}
    return Panel("table", title, targets, w=12, h=10,
                 transformations=merge_table(cols, sort_by="Cost"),
                 overrides=[unit_override("Cost", "none", 2), unit_override("GPU cost", "none", 2),
                            unit_override("GPU-hours", "none", 1)],
                 options={"footer": {"show": True, "reducer": ["sum"], "fields": "", "countRows": False}},
                 desc="Money in the dashboard's time range (default: this month so far), in the currency of the "
                      "--budgets price table: all priced TRES (Cost) and GPUs only (GPU cost), from "
                      "slurm_account_tres_cost_total, next to the GPU-hours they paid for. `report` prints the "
                      "same figures exactly for a calendar month.")


def monthly_usage() -> dict:
    items = [
        Row("sreport cluster AccountUtilizationByUser"),
        usage_table("Selected period by account", "account",
                    "TRES-hours allocated in the dashboard's time range (default: this month so far), as "
                    "`sreport cluster AccountUtilizationByUser -t Hours` reports them; memory in GB-hours."),
        usage_table("Previous month by account", "account",
                    "The whole previous calendar month (panel time shift 1M/M).", time_shift="1M/M"),
        usage_table("Selected period by account and user", "account, user",
                    "Per account and user in the dashboard's time range (default: this month so far)."),
        usage_table("Previous month by account and user", "account, user",
                    "Per account and user over the whole previous calendar month.", time_shift="1M/M"),
        Row("Money"),
        money_table("Cost and GPU-hours in the selected period by account", "account"),
        money_table("Cost and GPU-hours in the selected period by account and user", "account, user"),
        Panel("timeseries", "Cost per day by account",
              [q('account:slurm_cost:increase1d{' + CA + '}', "{{account}} ({{currency}})", interval="1d")],
              w=12, h=9, unit="none", decimals=2, stack=True, custom={"drawStyle": "bars", "fillOpacity": 80},
              time_from="now-1M/M",
              desc="Money over the 24 hours before each point, all priced TRES (recording rule "
                   "account:slurm_cost:increase1d), next to the GPU-hours per day below."),
        Panel("timeseries", "Cost of allocated but idle GPUs per hour",
              [q('sum by (account, currency) (account:slurm_gpus_allocated_idle_cost_per_second:sum{' + CA + '}) * 3600',
                 "{{account}} ({{currency}})")], w=12, h=9, stack=True, decimals=2,
              desc="Money per hour spent on allocated GPUs that stayed below 5 % utilization for 10 minutes "
                   "(recording rule account:slurm_gpus_allocated_idle_cost_per_second:sum)."),
        Row("Trend"),
        Panel("timeseries", "GPU-hours per day by account",
              [q('account:slurm_gpu_hours:increase1d{' + CA + '}', "{{account}}", interval="1d")],
              w=12, h=9, unit="none", stack=True, custom={"drawStyle": "bars", "fillOpacity": 80},
              time_from="now-1M/M",
              desc="Daily GPU-hours since the start of the previous month (recording rule "
                   "account:slurm_gpu_hours:increase1d)."),
        Panel("timeseries", "GPU-hours used this month against budget",
              [q('max by (account) (slurm_account_budget_used_seconds{' + CA + ',tres="gres/gpu"}) / 3600',
                 "{{account}} used"),
               q('max by (account) (slurm_account_budget_seconds{' + CA + ',tres="gres/gpu"}) / 3600',
                 "{{account}} budget")],
              w=12, h=9, unit="none", time_from="now-1M/M",
              overrides=[{"matcher": {"id": "byFrameRefID", "options": "B"},
                          "properties": [{"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}}]}],
              desc="Month-to-date GPU-hours per account (resets on the 1st), over this and the previous month, "
                   "with the monthly budget dashed."),
        Panel("bargauge", "Budget used this month",
              [q('max by (account, tres) (slurm_account_budget_used_ratio{' + CA + '})', "{{account}} {{tres}}",
                 instant=True)], w=12, h=8, unit="percentunit", thresholds_=BUDGET_THRESHOLDS, min_=0, max_=1.2),
        Panel("timeseries", "GPU activity by account, daily mean",
              [q('avg_over_time(account:slurm_gpu_activity_ratio:avg{' + CA + '}[1d])', "{{account}}",
                 interval="1d")], w=12, h=8, unit="percentunit", min_=0, max_=1, time_from="now-1M/M",
              desc="How well each account used the GPUs it held, day by day (recording rule "
                   "account:slurm_gpu_activity_ratio:avg: SM activity where present, utilization otherwise)."),
        Panel("table", "GPU-hours over the last 30 days by account and user",
              [q('account_user:slurm_gpu_hours:increase30d{' + CA + ',user=~"$user"}', instant=True, table=True)],
              w=12, h=8, transformations=merge_table({"Value": "GPU-hours"}, exclude=("Time", "__name__"),
                                                     sort_by="GPU-hours"),
              overrides=[unit_override("GPU-hours", "none", 1)],
              desc="Rolling 30 days (recording rule account_user:slurm_gpu_hours:increase30d)."),
        *limits_panels(),
    ]
    return dashboard("slurm-monthly-usage", "Slurm monthly usage",
                     "sreport-style TRES usage per account and user, compared with the previous month.",
                     items, tags=["accounting"], time_from="now/M", time_to="now",
                     templating=variables(account_source="slurm_account_tres_usage_seconds_total"))


DASHBOARDS = {
    "gpu-usage-by-account.json": gpu_usage_by_account,
    "cluster-overview.json": cluster_overview,
    "node-gpu-efa-health.json": node_health,
    "job-view.json": job_view,
    "monthly-usage.json": monthly_usage,
}


# --------------------------------------------------------------------------------------------------
# docs/dashboards.md
# --------------------------------------------------------------------------------------------------

def markdown(built: dict[str, dict]) -> str:
    out = [
        "# Dashboards",
        "",
        "<!-- Generated by dashboards/generate.py; do not edit by hand. -->",
        "",
        "Grafana 10+ dashboards in `dashboards/`, shipped as ConfigMaps for the Grafana sidecar by `deploy/`",
        "(label `grafana_dashboard: \"1\"`). Every dashboard has a data-source variable (`$datasource`, any",
        "Prometheus) and the variables `$cluster`, `$partition`, `$account`, `$user`, `$node` (multi-value,",
        "All = `.*`). `cluster` is the label added by Prometheus target relabeling (see docs/deploy.md); with a",
        "single unlabelled cluster the All value still matches. Queries named `level:metric:op` are recording",
        "rules from `alerts/recording-rules.yaml`, which must be loaded in the same Prometheus.",
        "",
        "Import by hand: Dashboards > New > Import, upload the JSON, pick the Prometheus data source.",
        "",
    ]
    for fname, d in built.items():
        out += [f"## {d['title']}", "", f"`dashboards/{fname}` (uid `{d['uid']}`). {d['description']}", ""]
        extra = [v["name"] for v in d["templating"]["list"] if v["name"] not in
                 ("datasource", "cluster", "partition", "account", "user", "node")]
        if extra:
            out += [f"Extra variables: {', '.join('`$' + e + '`' for e in extra)}.", ""]
        out += [f"Default time range: `{d['time']['from']}` to `{d['time']['to']}`.", ""]
        out += ["| Section | Panel | Type | Query (PromQL) |", "|---|---|---|---|"]
        section = ""
        for p in d["panels"]:
            if p["type"] == "row":
                section = p["title"]
                continue
            title = p["title"]
            if p.get("timeFrom"):
                title += f" (time: {p['timeFrom']})"
            if p.get("timeShift"):
                title += f" (shift: {p['timeShift']})"
            exprs = "<br>".join(
                f"{t['refId']}: `{t['expr'].replace('|', chr(92) + '|')}`" for t in p["targets"])
            out.append(f"| {section} | {title} | {p['type']} | {exprs} |")
        out.append("")
    return "\n".join(out)


def main() -> int:
    check = "--check" in sys.argv
    built = {name: fn() for name, fn in DASHBOARDS.items()}
    outputs = {ROOT / "dashboards" / name: json.dumps(d, indent=2, sort_keys=False) + "\n"
               for name, d in built.items()}
    outputs[ROOT / "docs" / "dashboards.md"] = markdown(built)
    stale = []
    for path, text in outputs.items():
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path.relative_to(ROOT)))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if check and stale:
        print("out of date (run python3 dashboards/generate.py): " + ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
