#!/usr/bin/env bash
# Verifies the node agent against nvidia-smi on a real GPU box (H100, driver
# 580), while a PyTorch matmul loads GPU 0. See docs/node-agent.md.
#
#   sudo scripts/verify-h100.sh [path/to/slurm-gpu-exporter [path/to/nvml_costs]]
#
# With the second argument (cargo build --release --example nvml_costs) it
# also measures NVML's per-call costs against one collection and one
# nvidia-smi run while the GPU is loaded. Set VERIFY_OUT=dir to keep the
# outputs (metrics, nvidia-smi CSVs, costs table, RSS and scrape figures).
#
# Needs: the release binary, nvidia-smi, python3 with torch (CUDA). As root
# on cgroup v2 the PyTorch process is placed in a Slurm-shaped cgroup
# (system.slice/slurmstepd.scope/job_990001/step_0/user/task_0) so the
# cgroup attribution path is exercised; otherwise a DCGM-style mapping file
# is used. Then the GPM phase: SM activity (NVML GPM) under three loads —
# a full matmul, a one-block spin kernel (utilization ~100 % while one SM
# works) and a duty-cycled matmul — against `nvidia-smi dmon -s u` and
# `nvidia-smi dmon --gpm-metrics` (and `dcgmi dmon` where installed).
# Exit status 0 when every check passes.
set -euo pipefail

BIN=${1:-target/release/slurm-gpu-exporter}
COSTS=${2:-}
JOB=990001
MAPPED_JOB=990002
WORK=${VERIFY_OUT:-$(mktemp -d)}
mkdir -p "$WORK"
cleanup() {
    kill "${AGENT_PID:-}" "${LOAD_PID:-}" "${GPM_LOAD_PID:-}" 2>/dev/null || true
    wait 2>/dev/null || true  # (the load may be gone already)
    if [ -n "${CG:-}" ]; then
        # Move anything left back to the root cgroup so the tree can go.
        while read -r p; do echo "$p" > /sys/fs/cgroup/cgroup.procs 2>/dev/null || true; done < "$CG/cgroup.procs" 2>/dev/null
        d=$CG; while [ "$d" != /sys/fs/cgroup/system.slice ]; do rmdir "$d" 2>/dev/null || true; d=$(dirname "$d"); done
    fi
    [ -n "${VERIFY_OUT:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

[ -x "$BIN" ] || { echo "no binary at $BIN (cargo build --release)"; exit 2; }
command -v nvidia-smi >/dev/null || { echo "nvidia-smi not found"; exit 2; }

# 1. Load GPU 0 for 150 s; the environment mimics slurmstepd's.
SLURM_JOB_ID=$JOB SLURM_JOB_USER=${SUDO_USER:-${USER:-$(id -un)}} SLURM_JOB_ACCOUNT=verify \
CUDA_VISIBLE_DEVICES=0 python3 - <<'PY' &
import time, torch
a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
b = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
keep = torch.empty(8 * 1024**3, dtype=torch.uint8, device="cuda")  # +8 GiB
end = time.time() + 150
while time.time() < end:
    for _ in range(50):
        c = a @ b
    torch.cuda.synchronize()
PY
LOAD_PID=$!

MAPPING_ARGS=()
ATTRIBUTION=mapping
if [ "$(id -u)" = 0 ] && [ -f /sys/fs/cgroup/cgroup.controllers ] &&
    mkdir -p /sys/fs/cgroup/system.slice/slurmstepd.scope/job_$JOB/step_0/user/task_0 2>/dev/null; then
    CG=/sys/fs/cgroup/system.slice/slurmstepd.scope/job_$JOB/step_0/user/task_0
    echo "$LOAD_PID" > "$CG/cgroup.procs"
    ATTRIBUTION=cgroup
    echo "attribution: cgroup $CG ($(cat /proc/$LOAD_PID/cgroup))"
else
    mkdir -p "$WORK/job-mapping" && echo $JOB > "$WORK/job-mapping/0"
    MAPPING_ARGS=(--collector.jobs.mapping-dir "$WORK/job-mapping")
    echo "attribution: mapping file $WORK/job-mapping/0"
fi

sleep 20   # CUDA context up, clocks and utilization settled

# 2. Sample both at the same moment.
Q=index,uuid,pci.bus_id,utilization.gpu,memory.used,memory.total,power.draw,temperature.gpu,clocks.sm,clocks.mem
nvidia-smi --query-gpu=$Q --format=csv,noheader,nounits > "$WORK/smi.csv" &
"$BIN" node --once --slurm-node-name verify "${MAPPING_ARGS[@]}" > "$WORK/metrics.prom" 2> "$WORK/agent.log"
wait %2 2>/dev/null || true
nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits > "$WORK/apps.csv"
sleep 5
"$BIN" node --once --slurm-node-name verify --collector.efa=false --collector.memlock=false \
    --collector.jobs=false > "$WORK/metrics2.prom" 2>/dev/null
# A DCGM-style mapping file names a second job on GPU 0 (as Slinky's prolog would).
mkdir -p "$WORK/mapping2" && echo $MAPPED_JOB > "$WORK/mapping2/0"
"$BIN" node --once --slurm-node-name verify --collector.jobs.mapping-dir "$WORK/mapping2" \
    > "$WORK/metrics3.prom" 2>/dev/null

# NVML call costs, one collection and nvidia-smi, under the same load.
if [ -n "$COSTS" ]; then
    "$COSTS" 200 > "$WORK/costs.md"
    cat "$WORK/costs.md"
fi

# The agent as deployed: 1 s collections, served from the cache; RSS and
# scrape latency after 20 s. Then the same without NVML (gpu and jobs
# collectors off), and what a bare nvmlInit costs any process, for the RSS
# breakdown.
serve() { # log args...
    local log=$1 port; shift
    # A port free now (the kernel's pick), and the answer checked to be our agent's below.
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$BIN" --log.level=slurm_gpu_exporter=debug node --slurm-node-name verify --collect-interval 1s \
        --web.listen-address 127.0.0.1:$port "$@" 2> "$log" &
    AGENT_PID=$!
    sleep 20
    if ! kill -0 "$AGENT_PID" 2>/dev/null; then
        echo "FAIL  agent on port $port exited at start:"; tail -5 "$log"; return
    fi
    python3 - "$port" "$AGENT_PID" "$*" <<'PY'
import sys, time, urllib.request
port, pid, args = sys.argv[1], sys.argv[2], sys.argv[3]
lat, durations = [], {}
for i in range(200):
    t = time.perf_counter()
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read()
    lat.append(time.perf_counter() - t)
    if i == 0 and b'node="verify"' not in body:
        sys.exit(f"FAIL  whatever answers on port {port} is not the agent started here")
    if i % 20 == 0:  # 10 collections apart from each other
        for line in body.decode().splitlines():
            if line.startswith("slurm_node_collector_duration_seconds"):
                c = line.split('collector="')[1].split('"')[0]
                durations.setdefault(c, []).append(float(line.split()[-1]))
        time.sleep(1)
lat.sort()
st = dict(l.split(":", 1) for l in open(f"/proc/{pid}/status") if ":" in l)
print(f"== agent {args or '(defaults)'}")
print(f"scrapes: 200 sequential, body {len(body)} bytes, median {lat[100]*1e3:.2f} ms, p99 {lat[197]*1e3:.2f} ms (python urllib client)")
print("VmRSS {} (RssAnon {}, RssFile {})  VmHWM {}".format(*(st[k].strip() for k in ("VmRSS", "RssAnon", "RssFile", "VmHWM"))))
for c, v in sorted(durations.items()):
    v.sort()
    print(f"collector {c}: median {v[len(v) // 2] * 1e3:.2f} ms over {len(v)} collections")
PY
    kill "$AGENT_PID" 2>/dev/null || true
    wait "$AGENT_PID" 2>/dev/null || true
}
{
    serve "$WORK/agent-serve.log"
    serve "$WORK/agent-serve-nonvml.log" --collector.gpu=false --collector.jobs=false
    python3 - <<'PY'
import ctypes
def anon():
    st = dict(l.split(":", 1) for l in open("/proc/self/status"))
    return int(st["RssAnon"].split()[0]), int(st["RssFile"].split()[0])
a0, f0 = anon()
assert ctypes.CDLL("libnvidia-ml.so.1").nvmlInit_v2() == 0
a1, f1 = anon()
print(f"== a bare nvmlInit in python3 adds RssAnon {a1 - a0} kB, RssFile {f1 - f0} kB")
PY
} > "$WORK/serve.txt"
cat "$WORK/serve.txt"
grep -i "xid" "$WORK/agent-serve.log" || true

# GPM: the agent serving with 1 s collections (profiling values are means
# between two collections) under three loads on GPU 0, each against
# nvidia-smi's own readings taken meanwhile.
kill "$LOAD_PID" 2>/dev/null || true
wait "$LOAD_PID" 2>/dev/null || true
gpm_load() { # name seconds
    CUDA_VISIBLE_DEVICES=0 python3 - "$1" "$2" <<'PY' &
import sys, time, torch
kind, secs = sys.argv[1], float(sys.argv[2])
end = time.time() + secs
if kind == "full":      # every SM busy: a large fp16 matmul back to back
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    while time.time() < end:
        for _ in range(20):
            a @ a
        torch.cuda.synchronize()
elif kind == "small":   # a kernel always running, on one SM: a spin kernel
    while time.time() < end:
        for _ in range(10):
            torch.cuda._sleep(20_000_000)
        torch.cuda.synchronize()
else:                   # duty cycle: full matmul 25 % of every 400 ms
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    while time.time() < end:
        t = time.time()
        while time.time() - t < 0.1:
            a @ a
            torch.cuda.synchronize()
        time.sleep(0.3)
PY
    GPM_LOAD_PID=$!
}
GPM_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$BIN" node --slurm-node-name verify --collect-interval 1s --collector.efa=false --collector.memlock=false \
    --web.listen-address 127.0.0.1:$GPM_PORT 2> "$WORK/agent-gpm.log" &
AGENT_PID=$!
SMI_GPM=yes
nvidia-smi dmon --gpm-metrics 2 -c 1 -i 0 > "$WORK/dmon-gpm-probe.txt" 2>&1 || SMI_GPM=no
for kind in full small duty; do
    gpm_load $kind 40
    sleep 12   # CUDA context up, two collections past the load start
    # 8 scrapes 1 s apart, while nvidia-smi samples the same seconds.
    nvidia-smi dmon -s u -c 8 -i 0 > "$WORK/dmon-u-$kind.txt" 2>&1 &
    SMI_U=$!
    for i in 1 2 3 4 5 6 7 8; do
        python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' \
            "http://127.0.0.1:$GPM_PORT/metrics" | grep -E '^slurm_(gpu|job_gpu)_(sm_active|utilization|sm_occupancy|tensor_active|dram_active|profiling_supported|mig_mode|pipe_active)[^ ]*\{[^}]*gpu="0"|^slurm_job_gpu_sm_active_ratio' \
            > "$WORK/gpm-$kind-$i.prom" || true
        sleep 1
    done
    wait $SMI_U || true
    if [ $SMI_GPM = yes ]; then
        nvidia-smi dmon --gpm-metrics 2,3,5,10 -c 6 -i 0 > "$WORK/dmon-gpm-$kind.txt" 2>&1 || true
    fi
    if command -v dcgmi >/dev/null; then
        dcgmi dmon -e 1002,1003,1004,1005 -c 6 -i 0 > "$WORK/dcgmi-$kind.txt" 2>&1 || true
    fi
    kill "$GPM_LOAD_PID" 2>/dev/null || true
    wait "$GPM_LOAD_PID" 2>/dev/null || true
done
kill "$AGENT_PID" 2>/dev/null || true
wait "$AGENT_PID" 2>/dev/null || true
nvidia-smi -q -i 0 | grep -iE "Minor Number|MIG Mode|^ *Current *:" | head -4 > "$WORK/smi-q.txt" || true
nvidia-smi --query-gpu=index,mig.mode.current --format=csv,noheader > "$WORK/smi-mig.csv" 2>/dev/null || true

# 3. Compare.
python3 - "$WORK" "$JOB" "$LOAD_PID" "$MAPPED_JOB" "$ATTRIBUTION" <<'PY'
import csv, re, sys
work, job, load_pid, mapped_job, attribution = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
def parse(path):
    out = {}
    for line in open(path):
        if line.startswith("#") or not line.strip():
            continue
        m = re.match(r'(\w+)(\{.*\})? (\S+)$', line.strip())
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        out.setdefault(m.group(1), []).append((labels, float(m.group(3))))
    return out
m, m2, m3 = (parse(f"{work}/metrics{s}.prom") for s in ("", "2", "3"))
def get(mm, name, **want):
    for labels, v in mm.get(name, []):
        if all(labels.get(k) == str(x) for k, x in want.items()):
            return v
    return None
fails = 0
def mib(x):
    return "n/a" if x is None else f"{x / 2**20:.0f}"
def check(what, ok, detail):
    global fails
    fails += 0 if ok else 1
    print(f"{'PASS' if ok else 'FAIL'}  {what}: {detail}")
for row in csv.reader(open(f"{work}/smi.csv")):
    i, uuid, bus, util, mused, mtot, power, temp, sm, mem = [x.strip() for x in row]
    g = dict(gpu=i, uuid=uuid)
    check(f"gpu {i} up", get(m, "slurm_gpu_up", **g) == 1, f"uuid {uuid}")
    a = get(m, "slurm_gpu_utilization_ratio", **g)
    check(f"gpu {i} utilization", a is not None and abs(a * 100 - float(util)) <= 15, f"agent {a} smi {util}%")
    a = get(m, "slurm_gpu_memory_used_bytes", **g)
    check(f"gpu {i} memory used", a is not None and abs(a / 2**20 - float(mused)) <= max(64, 0.02 * float(mused)), f"agent {mib(a)} MiB smi {mused} MiB")
    a = get(m, "slurm_gpu_memory_total_bytes", **g)
    check(f"gpu {i} memory total", a is not None and abs(a / 2**20 - float(mtot)) <= 1, f"agent {mib(a)} MiB smi {mtot} MiB")
    a = get(m, "slurm_gpu_power_watts", **g)
    check(f"gpu {i} power", a is not None and abs(a - float(power)) <= max(30, 0.15 * float(power)), f"agent {a} W smi {power} W")
    a = get(m, "slurm_gpu_temperature_celsius", **g)
    check(f"gpu {i} temperature", a is not None and abs(a - float(temp)) <= 3, f"agent {a} smi {temp}")
    a = get(m, "slurm_gpu_sm_clock_hertz", **g)
    check(f"gpu {i} SM clock", a is not None and abs(a / 1e6 - float(sm)) <= 0.1 * float(sm) + 50, f"agent {a and a / 1e6} MHz smi {sm} MHz")
    e1, e2 = get(m, "slurm_gpu_energy_joules_total", **g), get(m2, "slurm_gpu_energy_joules_total", **g)
    check(f"gpu {i} energy counter", e1 is not None and e2 is not None and e2 >= e1, f"{e1} J -> {e2} J")
    bus_ok = any(l.get("pci_bus_id", "").lower().endswith(bus.lower()[-12:]) for l, _ in m["slurm_gpu_up"] if l.get("gpu") == i)
    check(f"gpu {i} pci_bus_id", bus_ok, bus)
info = [l for l, _ in m.get("slurm_gpu_job_info", []) if l.get("gpu") == "0"]
check(f"gpu 0 attributed to the job ({attribution})", any(l["job_id"] == job for l in info), str(info))
info3 = {l["job_id"] for l, _ in m3.get("slurm_gpu_job_info", []) if l.get("gpu") == "0"}
want3 = {mapped_job, job} if attribution == "cgroup" else {mapped_job}
check("gpu 0 attributed through a mapping file", want3 <= info3, str(sorted(info3)))
apps = {int(r[0]): float(r[1]) for r in csv.reader(open(f"{work}/apps.csv")) if r}
jm = get(m, "slurm_job_gpu_memory_used_bytes", job_id=job)
if load_pid in apps:
    check("job GPU memory vs the process's", jm is not None and abs(jm / 2**20 - apps[load_pid]) <= 64, f"agent {mib(jm)} MiB smi {apps[load_pid]} MiB")
check("collectors up", all(v == 1 for _, v in m["slurm_node_collector_up"]), str(m["slurm_node_collector_up"]))
print("gpu collector NVML time:", get(m, "slurm_node_collector_duration_seconds", collector="gpu"), "s")

# GPM: SM activity near 1 at full load, far below utilization when few SMs
# work, in between at a 25 % duty cycle; within 15 points of nvidia-smi's
# own GPM reading where that works.
import glob, os, statistics
def series(kind, name):
    vals = []
    for f in sorted(glob.glob(f"{work}/gpm-{kind}-*.prom")):
        for labels, v in parse(f).get(name, []):
            if labels.get("gpu") == "0":
                vals.append(v)
    return vals
def dmon(path, name):
    """Median of the dmon column headed `name` (e.g. sm, smutil)."""
    vals, cols = [], None
    if not os.path.exists(path):
        return None
    for line in open(path):
        f = line.split()
        if line.startswith("#") and f[1:2] == ["gpu"]:
            cols = f[1:]
            continue
        if not f or line.startswith("#") or cols is None or name not in cols:
            continue
        try:
            vals.append(float(f[cols.index(name)]))
        except (ValueError, IndexError):
            pass
    return statistics.median(vals) if vals else None
def med(v):
    return statistics.median(v) if v else None
gpm = {}
for kind in ("full", "small", "duty"):
    sm, util = med(series(kind, "slurm_gpu_sm_active_ratio")), med(series(kind, "slurm_gpu_utilization_ratio"))
    gpm[kind] = (sm, util)
    smi_u = dmon(f"{work}/dmon-u-{kind}.txt", "sm")           # dmon -s u: sm % (= utilization.gpu)
    smi_sm = dmon(f"{work}/dmon-gpm-{kind}.txt", "smutil")    # --gpm-metrics 2: GPM SM activity %
    print(f"GPM {kind}: agent sm_active {sm} utilization {util}; nvidia-smi dmon -s u sm {smi_u} %, --gpm-metrics SM activity {smi_sm} %")
    check(f"GPM {kind}: supported", 1.0 in series(kind, "slurm_gpu_profiling_supported"), "slurm_gpu_profiling_supported 1")
    if smi_sm is not None and sm is not None:
        check(f"GPM {kind}: agent SM activity vs nvidia-smi --gpm-metrics", abs(sm * 100 - smi_sm) <= 15, f"agent {sm * 100:.1f} % smi {smi_sm} %")
    if smi_u is not None and util is not None and kind != "duty":
        check(f"GPM {kind}: agent utilization vs nvidia-smi dmon -s u", abs(util * 100 - smi_u) <= 20, f"agent {util * 100:.0f} % smi {smi_u} %")
sm, util = gpm["full"]
check("GPM full load: SM activity near 1", sm is not None and sm >= 0.7, f"sm_active {sm}")
sm, util = gpm["small"]
check("GPM one-SM kernel: utilization says busy, SM activity says otherwise", sm is not None and util is not None and util >= 0.9 and sm <= 0.1, f"utilization {util} sm_active {sm}")
sm, util = gpm["duty"]
check("GPM 25 % duty cycle: SM activity well below 1", sm is not None and 0.05 <= sm <= 0.6, f"sm_active {sm}")
job_sm = med([v for l, v in parse(f"{work}/gpm-full-8.prom").get("slurm_job_gpu_sm_active_ratio", [])]) if os.path.exists(f"{work}/gpm-full-8.prom") else None
print("job-level SM activity (full load, if attributed):", job_sm)
minor_smi = None
for line in open(f"{work}/smi-q.txt"):
    if "Minor Number" in line:
        minor_smi = line.split(":")[1].strip()
minor_agent = next((l.get("minor") for l, _ in m.get("slurm_gpu_up", []) if l.get("gpu") == "0"), None)
check("gpu 0 minor number", minor_smi is not None and minor_agent == minor_smi, f"agent {minor_agent} nvidia-smi {minor_smi}")
mig_rows = [r for r in csv.reader(open(f"{work}/smi-mig.csv")) if r] if os.path.exists(f"{work}/smi-mig.csv") else []
mig_agent = get(m, "slurm_gpu_mig_mode_enabled", gpu="0")
if mig_rows and mig_rows[0][1].strip() in ("Enabled", "Disabled"):
    check("gpu 0 MIG mode", mig_agent == (1.0 if mig_rows[0][1].strip() == "Enabled" else 0.0), f"agent {mig_agent} smi {mig_rows[0][1].strip()}")
else:
    print(f"MIG mode: agent {mig_agent}, nvidia-smi {mig_rows}")
sys.exit(1 if fails else 0)
PY
