#!/usr/bin/env python3
"""Starts the real binary the way every shipped manifest and unit starts it, and checks that it
serves /metrics.

- Kubernetes (rendered kustomize / Helm output): every container of every StatefulSet, Deployment
  and DaemonSet, with exactly its `args` (after the kubelet's `$(VAR)` expansion) and `env`
  (`value`, `fieldRef spec.nodeName` -> a node name, optional `secretKeyRef` absent as in a Secret
  without that key). Volume mounts become temporary directories holding what the volume would:
  a token file for Secret volumes, the ConfigMap's data for ConfigMap volumes (budgets), an empty
  writable directory for the usage-state claim and emptyDir, and the host's own /proc and /sys
  for those hostPaths (other hostPaths: an empty directory).
- systemd units in deploy/systemd: ExecStart with the unit's Environment=, then its
  EnvironmentFile= (the shipped .env example, which overrides Environment= as systemd does),
  `${VAR}` expansion, `%d` (LoadCredential= files in a temporary credentials directory) and `%S`
  (a temporary state root with the unit's StateDirectory=).

Substituted, because they cannot exist here (each substitution is printed):
- the port of --web.listen-address becomes a free port; the host part (`:`, `[::]`, `0.0.0.0`,
  a name) is kept, so the address form the manifest uses is what the binary parses;
- the slurmrestd URL's host:port becomes 127.0.0.1:<a port nothing listens on>: the cluster
  scraper must still serve /metrics, reporting slurmrestd down (an `*_up` series at 0);
- paths under volume mounts and credentials, as above; the ExecStart binary path.

Fails when a cluster scraper has no --usage-state-file, or when its log says the token file or the
state file could not be used (a wrong mount). Passes when every program answers GET /metrics with 200 and at least one `*_up` series (and, for
the cluster scraper, one at 0), within 30 s. Runs as the invoking user: the node agent finds no
NVML here and reports its GPU collector down, which is still a served /metrics.

Usage: run_manifests.py --binary target/debug/slurm-gpu-exporter [--k8s rendered.yaml ...]
       [--systemd deploy/systemd] [--external-configmap NAME:KEY=FILE ...]
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import yaml

failures = 0
UP_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*_up(\{[^}]*\})? (\S+)", re.M)
WORKLOADS = ("StatefulSet", "Deployment", "DaemonSet")
# Log lines that mean a shipped path is wrong although /metrics is served.
BAD_LOG_LINES = ("cannot read token file", "usage counters restart from zero", "usage state not saved")
# ConfigMaps the user creates next to the chart (name -> key -> content), from --external-configmap.
EXTERNAL_CONFIGMAPS: dict[str, dict[str, str]] = {}


def report(ok: bool, name: str, detail: str = "") -> None:
    global failures
    if not ok:
        failures += 1
    print(("PASS" if ok else "FAIL") + f"  {name}" + (f"\n    {detail}" if detail and not ok else ""))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rewrite_listen(value: str, port: int) -> str:
    """Only the port: `:9342` -> `:PORT`, `[::]:9342` -> `[::]:PORT`."""
    host, sep, _ = value.rpartition(":")
    if not sep:
        return value  # no port: leave it for the binary to reject
    return f"{host}:{port}"


def dead_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return url
    return urlunsplit(parts._replace(netloc=f"127.0.0.1:{free_port()}"))


def check_metrics(proc: subprocess.Popen, port: int, want_down: bool, log: Path) -> tuple[bool, str]:
    url = f"http://127.0.0.1:{port}/metrics"
    deadline = time.monotonic() + 30
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False, f"exited with {proc.returncode}: {log.read_text()[-2000:]}"
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                body = r.read().decode()
            ups = UP_RE.findall(body)
            if not ups:
                return False, "200 but no *_up series"
            if want_down and not any(v == "0" for _, v in ups):
                return False, "slurmrestd is unreachable but no *_up series is 0"
            # The first poll (done before the first /metrics) read the token and the state file.
            for bad in BAD_LOG_LINES:
                if bad in log.read_text():
                    return False, f"served, but the log says {bad!r}: a mount or path is wrong"
            return True, f"{len(body)} bytes, {len(ups)} *_up series"
        except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
            last = str(e)  # not listening yet, or 503 before the first collection
        time.sleep(0.3)
    return False, f"no /metrics within 30 s (last: {last}); log: {log.read_text()[-2000:]}"


def run_program(label: str, binary: str, argv: list[str], env: dict[str, str], port: int, tmp: Path) -> None:
    is_cluster = bool(argv) and argv[0] == "cluster"
    if is_cluster and not any(a.startswith("--usage-state-file") for a in argv) and "SLURM_GPU_EXPORTER_USAGE_STATE_FILE" not in env:
        # Without it every restart resets the GPU-hour counters of the monthly report.
        report(False, f"{label}: cluster scraper without --usage-state-file")
        return
    log = tmp / "stderr.log"
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}
    print(f"      {label}: {shlex.join(['slurm-gpu-exporter', *argv])}")
    with open(log, "wb") as err:
        proc = subprocess.Popen([binary, *argv], env=full_env, stdout=err, stderr=err, start_new_session=True)
    try:
        ok, detail = check_metrics(proc, port, is_cluster, log)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    report(ok, f"{label} serves /metrics ({detail})" if ok else f"{label} serves /metrics", detail)


def expand_k8s(s: str, env: dict[str, str]) -> str:
    """The kubelet's $(VAR) expansion ($$ escapes, unknown names kept)."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), s)


def k8s_container(label: str, binary: str, doc: dict, c: dict, configmaps: dict[str, dict], tmp: Path) -> None:
    pod = doc["spec"]["template"]["spec"]
    if pod.get("enableServiceLinks") is not False:
        # The kubelet would add *_SERVICE_HOST/*_PORT variables this test cannot reproduce.
        report(False, f"{label}: enableServiceLinks is not false: the container's environment is not only its env list")
        return
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    vols.update({t["metadata"]["name"]: {"persistentVolumeClaim": {}} for t in doc["spec"].get("volumeClaimTemplates", [])})
    mounts: dict[str, Path] = {}
    for i, m in enumerate(c.get("volumeMounts", [])):
        v = vols.get(m["name"])
        if v is None:
            report(False, f"{label}: volumeMount {m['name']} has no volume")
            return
        hp = v.get("hostPath", {}).get("path")
        if hp in ("/proc", "/sys"):
            mounts[m["mountPath"]] = Path(hp)  # this machine's own, as the hostPath gives
            continue
        d = tmp / f"mount{i}"
        d.mkdir()
        if "secret" in v:
            items = v["secret"].get("items") or [{"key": "token", "path": "token"}]
            for it in items:
                # A JWT-shaped placeholder: header.payload.signature.
                (d / it["path"]).write_text("eyJhbGciOiJIUzI1NiJ9.eyJzdW4iOiJ0ZXN0In0.c2lnbmF0dXJl\n")
        elif "configMap" in v:
            data = configmaps.get(v["configMap"]["name"], {})
            items = v["configMap"].get("items") or [{"key": k, "path": k} for k in data]
            for it in items:
                if it["key"] not in data:
                    # A ConfigMap the user provides (e.g. a CA bundle): --external-configmap.
                    report(False, f"{label}: ConfigMap {v['configMap']['name']} key {it['key']} is not in the render (--external-configmap)")
                    return
                (d / it["path"]).write_text(data[it["key"]])
        mounts[m["mountPath"]] = d
    env: dict[str, str] = {}
    for e in c.get("env", []):
        if "value" in e:
            env[e["name"]] = expand_k8s(str(e["value"]), env)
        elif e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "spec.nodeName":
            env[e["name"]] = "gpu-node-1"
        elif e.get("valueFrom", {}).get("secretKeyRef", {}).get("optional"):
            pass  # the test Secret has no such key: the kubelet leaves the variable unset
        else:
            report(False, f"{label}: env {e['name']} from {e.get('valueFrom')}: not supported by this test")
            return
    port = free_port()
    argv = []
    for a in c.get("args", []):
        a = expand_k8s(a, env)
        flag, eq, value = a.partition("=")
        if eq and flag == "--web.listen-address":
            print(f"      {label}: --web.listen-address={value} -> {rewrite_listen(value, port)} (port only)")
            value = rewrite_listen(value, port)
        elif eq and flag == "--slurmrestd-url":
            dead = dead_url(value)
            print(f"      {label}: --slurmrestd-url={value} -> {dead} (nothing listens there)")
            value = dead
        elif eq:
            for mp in sorted(mounts, key=len, reverse=True):
                if value == mp or value.startswith(mp.rstrip("/") + "/"):
                    value = str(mounts[mp]) + value[len(mp.rstrip("/")):]
                    break
        argv.append(flag + eq + value if eq else a)
    for k in ("SLURMRESTD_URL",):
        if k in env:
            env[k] = dead_url(env[k])
    if c.get("command"):
        report(False, f"{label}: `command` overrides the image entrypoint; this test runs the binary")
        return
    run_program(label, binary, argv, env, port, tmp)


def k8s_file(binary: str, path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    configmaps = {name: dict(data) for name, data in EXTERNAL_CONFIGMAPS.items()}
    for d in docs:
        if d["kind"] == "ConfigMap":
            configmaps.setdefault(d["metadata"]["name"], {}).update(d.get("data", {}))
    n = 0
    for d in docs:
        if d["kind"] not in WORKLOADS:
            continue
        for c in d["spec"]["template"]["spec"]["containers"]:
            n += 1
            with tempfile.TemporaryDirectory() as tmp:
                k8s_container(f"{path.name} {d['kind']}/{d['metadata']['name']}/{c['name']}", binary, d, c, configmaps, Path(tmp))
    report(n > 0, f"{path.name}: {n} containers started")


def unit_directives(text: str) -> list[tuple[str, str]]:
    """[Service] key=value pairs in order, line continuations joined."""
    out, section, buf = [], "", ""
    for raw in text.splitlines():
        line = buf + raw.strip()
        if line.endswith("\\"):
            buf = line[:-1] + " "
            continue
        buf = ""
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line:
            k, v = line.split("=", 1)
            out.append((k.strip(), v.strip()))
    return out


def env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";")) and "=" in line:
            k, v = line.split("=", 1)
            env[k.strip()] = v.strip().strip('"')
    return env


def systemd_unit(binary: str, unit: Path) -> None:
    label = f"systemd {unit.name}"
    directives = unit_directives(unit.read_text())
    env: dict[str, str] = {}
    files: list[dict[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        creds = tmp / "credentials"
        creds.mkdir()
        exec_start = None
        for k, v in directives:
            if k == "Environment":
                for item in shlex.split(v):
                    name, _, val = item.partition("=")
                    env[name] = val
            elif k == "EnvironmentFile":
                # The shipped example stands for /etc/default/<unit name without .service>.
                example = unit.with_suffix(".env")
                if not example.is_file():
                    report(False, f"{label}: EnvironmentFile {v} has no example {example.name}")
                    return
                files.append(env_file(example))
            elif k == "LoadCredential":
                name = v.split(":", 1)[0]
                (creds / name).write_text("eyJhbGciOiJIUzI1NiJ9.eyJzdW4iOiJ0ZXN0In0.c2lnbmF0dXJl\n")
            elif k == "ExecStart":
                exec_start = v
        for f in files:
            env.update(f)  # EnvironmentFile= overrides Environment=
        if exec_start is None:
            report(False, f"{label}: no ExecStart")
            return
        unknown = re.findall(r"%[^dS%]", exec_start)
        if unknown:
            report(False, f"{label}: ExecStart specifiers {unknown} not handled by this test")
            return
        # %S (/var/lib): a temporary directory holding the unit's StateDirectory= as systemd creates it.
        state_root = tmp / "state"
        for k, v in directives:
            if k == "StateDirectory":
                for d in v.split():
                    (state_root / d).mkdir(parents=True, exist_ok=True)
        cmd = exec_start.replace("%d", str(creds)).replace("%S", str(state_root)).replace("%%", "%")

        # systemd: ${VAR} is one word, $VAR splits on whitespace.
        def expand(word: str) -> list[str]:
            if re.fullmatch(r"\$[A-Za-z_][A-Za-z0-9_]*", word):
                return env.get(word[1:], "").split()
            return [re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: env.get(m.group(1), ""), word)]

        words = [x for w in shlex.split(cmd) for x in expand(w)]
        if not words[0].endswith("/slurm-gpu-exporter"):
            report(False, f"{label}: ExecStart runs {words[0]}")
            return
        port = free_port()
        argv = []
        for a in words[1:]:
            flag, eq, value = a.partition("=")
            if eq and flag == "--web.listen-address":
                print(f"      {label}: --web.listen-address={value} -> {rewrite_listen(value, port)} (port only)")
                value = rewrite_listen(value, port)
            argv.append(flag + eq + value if eq else a)
        if "SLURMRESTD_URL" in env:
            env["SLURMRESTD_URL"] = dead_url(env["SLURMRESTD_URL"])
        run_program(label, binary, argv, env, port, tmp)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--k8s", nargs="*", default=[], type=Path)
    ap.add_argument("--systemd", type=Path)
    ap.add_argument("--external-configmap", action="append", default=[], metavar="NAME:KEY=FILE",
                    help="a ConfigMap the manifests reference but do not contain (e.g. a CA bundle)")
    a = ap.parse_args()
    for spec in a.external_configmap:
        name_key, _, file = spec.partition("=")
        name, _, key = name_key.partition(":")
        EXTERNAL_CONFIGMAPS.setdefault(name, {})[key] = Path(file).read_text()
    if not os.access(a.binary, os.X_OK):
        report(False, f"binary {a.binary} not found (cargo build --bin slurm-gpu-exporter)")
        return 1
    for f in a.k8s:
        k8s_file(a.binary, f)
    if a.systemd:
        units = sorted(a.systemd.glob("*.service"))
        for u in units:
            systemd_unit(a.binary, u)
        report(bool(units), f"{a.systemd}: {len(units)} units started")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
