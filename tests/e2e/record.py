#!/usr/bin/env python3
"""Record a live e2e cluster's slurmrestd answers and CLI outputs as test fixtures.

    record.py OUT_DIR            (with STATE_DIR/env sourced and the CLI on PATH)

Writes OUT_DIR/slurmrestd/<version>/<path>.json for every API version the server
serves among those the exporter knows, each with a _manifest.json naming the Slurm
release (status, content type and size of every request, errors included: an
unsupported `?update_time=` is an answer worth keeping), and OUT_DIR/slurm-cli/ with
the CLI outputs taken right after (squeue/sinfo/scontrol/sshare/sdiag), the oracle of
tests/adapters.rs. Only GET endpoints the exporter uses are called: never a crawl.
Stdlib only.
"""

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request

KNOWN = ["v0.0.38", "v0.0.40", "v0.0.41", "v0.0.42", "v0.0.43", "v0.0.44", "v0.0.45"]


def get(path):
    url = os.environ["SLURMRESTD_URL"] + path
    token = open(os.environ["SLURMRESTD_TOKEN_FILE"]).read().strip()
    req = urllib.request.Request(url, headers={
        "X-SLURM-USER-NAME": os.environ.get("SLURMRESTD_TOKEN_USER", "root"),
        "X-SLURM-USER-TOKEN": token})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


def scrub(body, token):
    return body.replace(token.encode(), b"<redacted>") if token else body


def file_name(path):
    """/slurm/v0.0.45/jobs/state?update_time=1 -> slurm_jobs_state_update_time.json"""
    p, _, q = path.partition("?")
    parts = [x for x in p.split("/") if x and not re.fullmatch(r"v0\.0\.\d+", x)]
    name = "_".join(parts)
    if q:
        name += "_" + "_".join(k for k, _, _ in (kv.partition("=") for kv in q.split("&")))
    return name + ".json"


def record_version(out, version, release, gpu_job, since):
    d = os.path.join(out, "slurmrestd", version)
    os.makedirs(d, exist_ok=True)
    token = open(os.environ["SLURMRESTD_TOKEN_FILE"]).read().strip()
    paths = [f"/slurm/{version}/ping", f"/slurm/{version}/diag", f"/slurm/{version}/jobs",
             f"/slurm/{version}/nodes", f"/slurm/{version}/partitions",
             f"/slurm/{version}/job/{gpu_job}",
             # conditional requests: what each release answers matters (304, 422, 500, ...)
             f"/slurm/{version}/jobs?update_time={since}",
             f"/slurm/{version}/nodes?update_time={since}",
             f"/slurm/{version}/partitions?update_time={since}",
             f"/slurmdb/{version}/jobs?start_time={since - 3600}",
             f"/slurmdb/{version}/associations", f"/slurmdb/{version}/qos",
             f"/slurmdb/{version}/accounts"]
    if version != "v0.0.38":
        paths += [f"/slurm/{version}/shares", f"/slurm/{version}/jobs/state"]
    requests = []
    for path in paths:
        status, ctype, body = get(path)
        name = file_name(path)
        if status != 200:
            name = "_err_" + name
        with open(os.path.join(d, name), "wb") as f:
            f.write(scrub(body, token))
        requests.append({"file": name, "method": "GET", "request": path, "status": status,
                         "content_type": ctype, "bytes": len(body)})
    manifest = {"slurm_release": release, "data_parser": version, "recorded_at": int(time.time()),
                "recorded_by": "tests/e2e/record.py (live e2e rig, tests/e2e/slurm-up.sh + jobmix.sh)",
                "requests": requests}
    with open(os.path.join(d, "_manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


def run(cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def record_cli(out, release):
    d = os.path.join(out, "slurm-cli")
    os.makedirs(d, exist_ok=True)
    cmds = {
        "squeue.json": ["squeue", "--json"],
        "sinfo.json": ["sinfo", "--json"],
        "scontrol_show_node.json": ["scontrol", "show", "node", "--json"],
        "scontrol_show_partition.json": ["scontrol", "show", "partition", "--json"],
        "scontrol_show_partition.txt": ["scontrol", "-o", "show", "partition"],
        "sshare.txt": ["sshare", "-a", "-l", "-P"],
        "sdiag.txt": ["sdiag"],
        "squeue_reasons.txt": ["squeue", "-r", "-h", "-t", "PD", "-o", "%i|%a|%r"],
        "sshare.json": ["sshare", "--json"],
        "sacctmgr_show_assoc.txt": ["sacctmgr", "-P", "show", "assoc",
                                    "format=cluster,account,user,partition,parentname,share,grptres,grptresmins,"
                                    "grptresrunmins,grpjobs,grpsubmit,maxtres,maxtrespernode,maxjobs,maxsubmit,qos"],
        "sacctmgr_show_qos.txt": ["sacctmgr", "-P", "show", "qos",
                                  "format=name,priority,grptres,grptresmins,grptresrunmins,grpjobs,grpsubmit,"
                                  "maxtres,maxtrespu,maxtrespa,maxjobspu,maxsubmitpu,flags"],
    }
    done = []
    for name, cmd in cmds.items():
        with open(os.path.join(d, name), "w") as f:
            f.write(run(cmd))
        done.append({"file": name, "command": " ".join(cmd)})
    with open(os.path.join(d, "_manifest.json"), "w") as f:
        json.dump({"slurm_release": release, "recorded_at": int(time.time()), "commands": done}, f, indent=1)
        f.write("\n")


def main():
    out = sys.argv[1]
    release = os.environ["E2E_SLURM_RELEASE"]
    served = [v for v in KNOWN if get(f"/slurm/{v}/ping")[0] == 200]
    jobmix = dict(line.strip().split("=", 1) for line in
                  open(os.path.join(os.environ["E2E_SLURM_STATE_DIR"], "jobmix.env")) if "=" in line)
    gpu_job = jobmix["JOB_TRAIN_LLAMA"]
    since = int(time.time()) - 60
    for v in served:
        record_version(out, v, release, gpu_job, since)
    record_cli(out, release)
    print(f"recorded Slurm {release}: {', '.join(served)} into {out}")


if __name__ == "__main__":
    main()
