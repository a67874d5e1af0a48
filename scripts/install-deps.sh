#!/usr/bin/env bash
# Installs what hotswap builds and tests with, from Debian's packages. Idempotent and quiet:
# packages already present are skipped, so a second run costs a dpkg query.
set -euo pipefail

packages=(
  build-essential cmake ccache pkg-config git curl python3
  libgtest-dev libgmock-dev
  nlohmann-json3-dev libpcre2-dev
  libcpprest-dev libssl-dev libyaml-cpp-dev prometheus-cpp-dev
  clang-format
  clang libclang-rt-dev  # make fuzz: clang and its libFuzzer runtime
  gnuplot-nox  # make bench: the migration downtime plot
  # The Helm chart's tests render it with Helm's template engine (e2e/helm-render): Go's
  # text/template with Sprig; Helm itself is not packaged.
  golang-go golang-github-masterminds-sprig-dev golang-gopkg-yaml.v3-dev
  prometheus  # promtool checks every /metrics page and the chart's alerting rules
)

# kubectl drives the dev cluster in the tests; Debian's kubernetes-client when none is on PATH.
if ! command -v kubectl >/dev/null 2>&1; then packages+=(kubernetes-client); fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
