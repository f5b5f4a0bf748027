#!/usr/bin/env bash
# Serve local models as the MT-bench judge through FastChat's own OpenAI-compatible server: a controller,
# one model worker per model and `openai_api_server`, all from the judge virtualenv (eval/judge_venv.sh).
#
#   eval/serve_judge.sh MODEL_DIR[=NAME] [MODEL_DIR[=NAME] ...]     (NAME: the judge name, default gpt-4)
#
# Prints `judge ready: OPENAI_API_BASE=http://HOST:PORT/v1` once every model answers, then serves until it
# gets SIGINT/SIGTERM (it stops its servers then). Use it from another shell:
#   OPENAI_API_BASE=http://127.0.0.1:8000/v1 OPENAI_API_KEY=EMPTY eval/run_all.sh MODEL OUT
# NAME must be a judge name FastChat accepts (gpt-4, gpt-4-0613, gpt-3.5-turbo, ...): FastChat's llm_judge
# sends the OpenAI API only those. FastChat formats the judge prompt with its own conversation template for
# the model (chosen from the folder name), as its judge would be served in practice.
#
# Environment: JUDGE_PORT [8000] (the API; the controller and workers take the ports after it),
#   JUDGE_HOST [127.0.0.1], JUDGE_DEVICE [cuda if available, else cpu], JUDGE_VENV [eval/.venv-judge],
#   JUDGE_LOG_DIR [./judge_logs] (one log per server), JUDGE_START_TIMEOUT [600] seconds.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
die() { echo "serve_judge: ERROR: $*" >&2; exit 2; }
[[ $# -ge 1 ]] || die "usage: eval/serve_judge.sh MODEL_DIR[=NAME] [MODEL_DIR[=NAME] ...]"
PORT="${JUDGE_PORT:-8000}" HOST="${JUDGE_HOST:-127.0.0.1}"
VENV="${JUDGE_VENV:-$HERE/.venv-judge}"
LOG_DIR="${JUDGE_LOG_DIR:-$PWD/judge_logs}"
MAIN_PY="${PYTHON:-$REPO/.venv/bin/python}"
[[ -x "$MAIN_PY" ]] || MAIN_PY=python3
mkdir -p "$LOG_DIR"
export LOGDIR="$LOG_DIR"  # FastChat's servers write their own logs to $LOGDIR (default: the working directory)
# shellcheck disable=SC1091  # sourced from this script's own folder
source "$HERE/judge_venv.sh"
ensure_judge_venv "$VENV" "$MAIN_PY" "${JUDGE_MODEL:-gpt-4}" "$LOG_DIR/judge_venv.log"
PY="$VENV/bin/python"
DEVICE="${JUDGE_DEVICE:-$("$PY" -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')}"

PIDS=()
# shellcheck disable=SC2329  # called by the trap
stop() { ((${#PIDS[@]})) && kill "${PIDS[@]}" 2>/dev/null; wait 2>/dev/null; exit 0; }
trap stop INT TERM EXIT

CONTROLLER="http://$HOST:$((PORT + 1))"
"$PY" -m fastchat.serve.controller --host "$HOST" --port "$((PORT + 1))" >"$LOG_DIR/controller.log" 2>&1 &
PIDS+=($!)
NAMES=()
for i in $(seq 1 $#); do
  spec="${!i}" folder="${spec%%=*}" name=gpt-4
  [[ "$spec" == *=* ]] && name="${spec#*=}"
  [[ -f "$folder/config.json" ]] || die "$folder: not an HF model folder (no config.json)"
  grep -qxF "$name" "$VENV/fastchat_judge_names.txt" \
    || die "$name is not a judge name FastChat accepts ($(tr '\n' ' ' <"$VENV/fastchat_judge_names.txt"))"
  worker_port=$((PORT + 1 + i))
  "$PY" -m fastchat.serve.model_worker --model-path "$folder" --model-names "$name" --device "$DEVICE" \
    --host "$HOST" --port "$worker_port" --worker-address "http://$HOST:$worker_port" \
    --controller-address "$CONTROLLER" >"$LOG_DIR/worker_$name.log" 2>&1 &
  PIDS+=($!)
  NAMES+=("$name")
  echo "serve_judge: $folder as $name on $DEVICE (log: $LOG_DIR/worker_$name.log)" >&2
done
"$PY" -m fastchat.serve.openai_api_server --host "$HOST" --port "$PORT" --controller-address "$CONTROLLER" \
  >"$LOG_DIR/openai_api_server.log" 2>&1 &
PIDS+=($!)

# Ready when the API lists every name and each answers a chat request.
deadline=$((SECONDS + ${JUDGE_START_TIMEOUT:-600}))
for name in "${NAMES[@]}"; do
  until "$PY" - "$HOST" "$PORT" "$name" >/dev/null 2>&1 <<'PY'
import json, sys, urllib.request
host, port, name = sys.argv[1:]
body = {"model": name, "max_tokens": 4, "temperature": 0, "messages": [{"role": "user", "content": "ready?"}]}
request = urllib.request.Request(f"http://{host}:{port}/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
with urllib.request.urlopen(request, timeout=60) as response:
    json.loads(response.read())["choices"][0]["message"]["content"]
PY
  do
    for pid in "${PIDS[@]}"; do
      kill -0 "$pid" 2>/dev/null || die "a FastChat server exited; see the logs in $LOG_DIR"
    done
    ((SECONDS < deadline)) || die "the judge $name did not answer within ${JUDGE_START_TIMEOUT:-600} s; see $LOG_DIR"
    sleep 2
  done
done
echo "judge ready: OPENAI_API_BASE=http://$HOST:$PORT/v1 (models: ${NAMES[*]}; logs: $LOG_DIR)"
wait
