#!/usr/bin/env bash
# Installs what the tests and the local broker need on a fresh Debian machine: Java 17 (a JDK) and Maven (the
# broker), kcat (end-to-end tests with a client nobody here wrote), promtool (alert-rule checks), then the
# pinned chart tools into .cache/bin: helm and kubeconform (built from the Go module proxy), and the Kubernetes
# and Prometheus Operator JSON schemas kubeconform validates the rendered chart against (scripts/schemas.sh).
# As root it uses apt-get; otherwise it names the packages to install and fails. Quick when all is there.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
# javac: the transactional test connector (internal/kafkatest/testdata/TxnProducer.java) is compiled at test time.
command -v javac >/dev/null 2>&1 || missing+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
command -v kcat >/dev/null 2>&1 || missing+=(kcat)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "deps.sh: missing tools; install the Debian packages: ${missing[*]}" >&2
    exit 1
  fi
  echo "deps.sh: installing ${missing[*]} with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  # --no-install-recommends keeps the prometheus package from pulling a web UI stack; promtool is in it.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  # The Debian prometheus package starts a server on :9090; tests run their own, so stop the system one.
  if [[ " ${missing[*]} " == *" prometheus "* ]] && command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
fi

# Pinned chart tools, rebuilt only when absent or of another version (go version -m reads the module version).
bin=$PWD/.cache/bin
mkdir -p "$bin"
gotool() { # gotool NAME PACKAGE MODULE VERSION
  if ! go version -m "$bin/$1" 2>/dev/null | grep -Eq "^[[:space:]]+mod[[:space:]]+$3[[:space:]]+$4([[:space:]]|$)"; then
    echo "deps.sh: building $1 $4 from the Go module proxy (a few minutes, once)" >&2
    GOBIN=$bin go install "$2@$4" >&2
  fi
}
gotool helm helm.sh/helm/v4/cmd/helm helm.sh/helm/v4 v4.3.2
gotool kubeconform github.com/yannh/kubeconform/cmd/kubeconform github.com/yannh/kubeconform v0.8.0
scripts/schemas.sh
