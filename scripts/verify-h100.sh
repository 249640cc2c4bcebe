#!/usr/bin/env bash
# Verifies the node agent against nvidia-smi on a real GPU box (H100, driver
# 580), while a PyTorch matmul loads GPU 0. See docs/node-agent.md.
#
#   sudo scripts/verify-h100.sh [path/to/slurm-gpu-exporter]
#
# Needs: the release binary, nvidia-smi, python3 with torch (CUDA). As root
# on cgroup v2 the PyTorch process is placed in a Slurm-shaped cgroup
# (system.slice/slurmstepd.scope/job_990001/step_0/user/task_0) so the
# cgroup attribution path is exercised; otherwise a DCGM-style mapping file
# is used. Exit status 0 when every check passes.
set -euo pipefail

BIN=${1:-target/release/slurm-gpu-exporter}
JOB=990001
WORK=$(mktemp -d)
trap 'kill "${LOAD_PID:-}" 2>/dev/null || true; [ -n "${CG:-}" ] && rmdir -p "$CG" 2>/dev/null || true; rm -rf "$WORK"' EXIT

[ -x "$BIN" ] || { echo "no binary at $BIN (cargo build --release)"; exit 2; }
command -v nvidia-smi >/dev/null || { echo "nvidia-smi not found"; exit 2; }

# 1. Load GPU 0 for 90 s; the environment mimics slurmstepd's.
SLURM_JOB_ID=$JOB SLURM_JOB_USER=${SUDO_USER:-$USER} SLURM_JOB_ACCOUNT=verify \
CUDA_VISIBLE_DEVICES=0 python3 - <<'PY' &
import time, torch
a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
b = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
keep = torch.empty(8 * 1024**3, dtype=torch.uint8, device="cuda")  # +8 GiB
end = time.time() + 90
while time.time() < end:
    for _ in range(50):
        c = a @ b
    torch.cuda.synchronize()
PY
LOAD_PID=$!

MAPPING_ARGS=()
if [ "$(id -u)" = 0 ] && [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    CG=/sys/fs/cgroup/system.slice/slurmstepd.scope/job_$JOB/step_0/user/task_0
    mkdir -p "$CG" && echo "$LOAD_PID" > "$CG/cgroup.procs"
    echo "attribution: cgroup $CG"
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

# 3. Compare.
python3 - "$WORK" "$JOB" "$LOAD_PID" <<'PY'
import csv, re, sys
work, job, load_pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
def parse(path):
    out = {}
    for line in open(path):
        if line.startswith("#") or not line.strip():
            continue
        m = re.match(r'(\w+)(\{.*\})? (\S+)$', line.strip())
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        out.setdefault(m.group(1), []).append((labels, float(m.group(3))))
    return out
m, m2 = parse(f"{work}/metrics.prom"), parse(f"{work}/metrics2.prom")
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
check("gpu 0 attributed to the job", any(l["job_id"] == job for l in info), str(info))
apps = {int(r[0]): float(r[1]) for r in csv.reader(open(f"{work}/apps.csv")) if r}
jm = get(m, "slurm_job_gpu_memory_used_bytes", job_id=job)
if load_pid in apps:
    check("job GPU memory vs the process's", jm is not None and abs(jm / 2**20 - apps[load_pid]) <= 64, f"agent {mib(jm)} MiB smi {apps[load_pid]} MiB")
check("collectors up", all(v == 1 for _, v in m["slurm_node_collector_up"]), str(m["slurm_node_collector_up"]))
print("gpu collector NVML time:", get(m, "slurm_node_collector_duration_seconds", collector="gpu"), "s")
sys.exit(1 if fails else 0)
PY
