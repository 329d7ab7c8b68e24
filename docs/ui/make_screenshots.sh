#!/usr/bin/env bash
# Screenshots of the MLflow UI (3.17) on a small real study, in headless Debian Chromium:
# the runs view, the chart view (metrics grouped in sections) and the parent run (its
# description: the study summary and the law table).
#
#   docs/ui/make_screenshots.sh [STORAGE]     # default /tmp/ui_store/tiny_test
#
# The store is built by docs/ui/build_store.py when STORAGE has none. The server is started
# with `varscale ui` itself (which prints the runs and chart addresses used here) and stopped
# with SIGTERM at the end. Chromium is driven by docs/ui/screenshots.py. Needs: apt-get install
# chromium.
set -euo pipefail
cd "$(dirname "$0")/../.."
STORAGE=${1:-/tmp/ui_store/tiny_test}
PORT=${PORT:-5077}
PYTHON=.venv/bin/python
STUDY=(tests/orchestration/fixtures/tiny_study.yaml --set "storage=$STORAGE" --set "model.depths=[1,2,3]" --set "budgets.values=[32,64]")
[ -f "$STORAGE/mlflow.db" ] || "$PYTHON" docs/ui/build_store.py "$STORAGE"

LOG=$(mktemp)
.venv/bin/varscale ui "${STUDY[@]}" --port "$PORT" > "$LOG" 2>&1 &
UI=$!
trap 'kill -TERM "$UI" 2>/dev/null; wait "$UI" 2>/dev/null || true; rm -f "$LOG"' EXIT
for _ in $(seq 300); do
  curl -sf "http://127.0.0.1:$PORT/health" > /dev/null && break
  sleep 1
done
RUNS=$(sed -n 's/^  runs: *//p' "$LOG")
CHARTS=$(sed -n 's/^  charts: *//p' "$LOG")
PARENT=$("$PYTHON" - "$STORAGE" "$PORT" <<'PY'
import sys
from analysis.loader import load_study
from orchestration.tracking.ui_urls import run_url

study = load_study("tiny_test", f"sqlite:///{sys.argv[1]}/mlflow.db", load_curves=False)
print(run_url(f"http://127.0.0.1:{sys.argv[2]}", study.experiment_id, study.parent_run_id))
PY
)
# Clicks: close MLflow's assistant panel, expand the study's run to show its trials, and in the
# chart view fold the first sections so that the train/ and test/ sections are on screen.
CLOSE='button[data-component-id="mlflow.assistant.chat_panel.close"]'
EXPAND='button[data-component-id*="runnamecellrenderer"]'
FOLD='js:[...document.querySelectorAll(".du-bois-light-collapse-header")].filter(h => /^(counters|final|spend|Model metrics)\n/.test(h.innerText)).map(h => h.click()).length'
shoot() {  # name, address, text to wait for, height, clicks...
  "$PYTHON" docs/ui/screenshots.py "docs/ui/$1.png" "$2" "$3" "$4" "${@:5}"
  echo "docs/ui/$1.png <- $2"
}
shoot runs_view "$RUNS" "matching runs" 900 "$CLOSE" "$EXPAND"
shoot chart_view "$CHARTS" "matching runs" 1500 "$CLOSE" "$EXPAND" "$FOLD"
shoot parent_run "$PARENT" "Study tiny_test" 1500 "$CLOSE" "text:Show more"
