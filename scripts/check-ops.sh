#!/usr/bin/env bash
# Lints the ops pack with the tools its formats have: cfn-lint (PyPI) for the CloudFormation
# template, kubernetes-validate (PyPI) for the manifests, promtool (Debian's prometheus) for the scrape config, alerting rules and their unit
# tests, systemd-analyze for the unit. Installs what is missing; skipped installs are cached.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/ops-venv
if [ ! -x "$venv/bin/cfn-lint" ] || [ ! -x "$venv/bin/kubernetes-validate" ]; then
  echo "== installing cfn-lint and kubernetes-validate (PyPI)" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet cfn-lint kubernetes-validate >&2
fi
"$venv/bin/cfn-lint" ops/cloudformation/*.yaml
echo "cfn-lint: ops/cloudformation clean" >&2
# Every manifest against the Kubernetes schemas, rejecting unknown fields.
"$venv/bin/kubernetes-validate" --strict --quiet $(ls ops/k8s/*.yaml | grep -v kustomization)
echo "kubernetes-validate: ops/k8s valid" >&2

if ! command -v promtool >/dev/null; then
  echo "== installing promtool (Debian package prometheus)" >&2
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus) >&2
  else
    (sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus) >&2
  fi
fi
promtool check config ops/prometheus/prometheus.yml
promtool check rules ops/prometheus/alerts.yml
(cd ops/prometheus && promtool test rules alerts_test.yml)

if command -v systemd-analyze >/dev/null; then
  # verify wants the binary the unit starts to exist: point it at a stand-in.
  unit=$(mktemp -d)/trailwatch.service
  sed "s#/usr/local/bin/trailwatch#$(command -v true)#" ops/systemd/trailwatch.service > "$unit"
  systemd-analyze verify "$unit"
  if systemd-analyze security --help 2>/dev/null | grep -q -- --offline; then
    # The threshold is on a 0-100 scale: 20 is exposure 2.0 ("OK").
    systemd-analyze security --offline=true --threshold=20 --no-pager "$unit" | tail -n 1
  fi
else
  echo "systemd-analyze not available: unit not verified" >&2
fi
