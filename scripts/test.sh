#!/usr/bin/env bash
# The test command (README's second command; .ci/run calls it too).
# Installs what the tests need (moto's EC2 server in a venv; kube-apiserver, etcd and helm
# built from Go modules), then runs every test.
# Fails loudly if anything cannot be installed: no test is skipped for a missing service.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/nodewright/target}"
CACHE="${NODEWRIGHT_CACHE:-$HOME/.cache/nodewright}"
VENV="$CACHE/venv"
MOTO_VERSION="5.2.1"
if ! "$VENV/bin/python" -c "import moto, flask; assert moto.__version__ == '$MOTO_VERSION'" 2>/dev/null; then
  echo "== installing moto[server]==$MOTO_VERSION into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
fi
export NODEWRIGHT_PYTHON="$VENV/bin/python"
# A real Kubernetes control plane (kube-apiserver + etcd, and kube-scheduler for the
# scheduler oracle, tests/oracle.rs) built from Go modules (tools/kube/go.mod); cached, so
# this only prints the folder once built.
command -v openssl >/dev/null || { echo "ERROR: the Kubernetes tests need 'openssl'" >&2; exit 1; }
echo "== kube-apiserver + etcd + kube-scheduler (scripts/kube-bins.sh)"
if ! KUBE_BIN_OUT="$(bash scripts/kube-bins.sh)"; then
  echo "ERROR: scripts/kube-bins.sh failed: cannot build kube-apiserver/etcd/kube-scheduler" >&2
  exit 1
fi
NODEWRIGHT_KUBE_BIN="$(printf '%s\n' "$KUBE_BIN_OUT" | tail -n 1)"
[ -x "$NODEWRIGHT_KUBE_BIN/kube-apiserver" ] && [ -x "$NODEWRIGHT_KUBE_BIN/etcd" ] &&
  [ -x "$NODEWRIGHT_KUBE_BIN/kube-scheduler" ] ||
  { echo "ERROR: no kube-apiserver/etcd/kube-scheduler in '$NODEWRIGHT_KUBE_BIN'" >&2; exit 1; }
export NODEWRIGHT_KUBE_BIN
# helm, for the chart tests (tests/chart.rs), also built from Go modules (tools/helm/go.mod).
echo "== helm (scripts/helm-bin.sh)"
if ! HELM_BIN_OUT="$(bash scripts/helm-bin.sh)"; then
  echo "ERROR: scripts/helm-bin.sh failed: cannot build helm" >&2
  exit 1
fi
NODEWRIGHT_HELM_BIN="$(printf '%s\n' "$HELM_BIN_OUT" | tail -n 1)"
[ -x "$NODEWRIGHT_HELM_BIN/helm" ] ||
  { echo "ERROR: no helm in '$NODEWRIGHT_HELM_BIN'" >&2; exit 1; }
export NODEWRIGHT_HELM_BIN
echo "== cargo test"
cargo test --locked "$@"
# The planner-only build (`--no-default-features`: no AWS SDK, no kube client, no tokio) is
# built and its unit tests run, so it cannot rot unseen. Only for the whole suite, not when
# arguments pick some tests. About 2.5 min the first time (the dependencies are rebuilt with
# other features), then seconds.
if [ "$#" -eq 0 ]; then
  echo "== planner-only build (--no-default-features)"
  cargo check --locked --no-default-features --lib --bins
  cargo test --locked --no-default-features --lib
fi
