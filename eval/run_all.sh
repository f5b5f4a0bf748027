#!/usr/bin/env bash
# Evaluate what training produced the way the paper does (Appendix D; eval/README.md) and write
# OUT/summary.json and OUT/summary.md (paper Tables 1 and 4, with standard errors).
#
#   eval/run_all.sh MODEL OUT
#
# MODEL: a training run folder (run.dir: its latest checkpoint, or its hf/ export if newer), a training
# checkpoint (run.dir/checkpoints/step_N), a converted checkpoint (convert import) or an HF folder.
# Checkpoints are exported to OUT/hf_model with `python -m mos_nemo.convert export`, with the config and
# tokenizer (and the chat template used in training) the run was trained with.
# The console says what runs and where its log is (OUT/logs/STEP.log), with lm-eval's progress bar.
# Steps: preflight (model loads and has a chat template, the judge answers one real chat request) ->
# lm-eval, one call per benchmark -> MT-bench answers (stopping at the template's end of turn) -> FastChat
# single-answer grading of the (question, turn) pairs not yet graded -> eval/aggregate.py.
# A rerun reuses lm-eval results only if lm-eval recorded the same model, model args, limit and n-shot
# (EVAL_FORCE=1 reruns them anyway), keeps MT-bench answers, and grades only missing or failed pairs.
#
# Environment (defaults in brackets):
#   EVAL_BACKEND      hf | vllm | local-completions [hf]  (vllm: lm-eval's vLLM model, batch size auto,
#                     MT-bench answers from vLLM's offline LLM API; needs `pip install -e '.[vllm]'` and a
#                     GPU. local-completions: an OpenAI-compatible completions server at EVAL_BASE_URL)
#   EVAL_BASE_URL     OpenAI-compatible server root, e.g. http://127.0.0.1:8000/v1 []; also makes MT-bench
#                     answers come from its chat endpoint (MTBENCH_BACKEND=openai)
#   EVAL_SERVED_MODEL model name on that server [the HF folder's path]
#   EVAL_BATCH_SIZE [auto for vllm, else 8]  EVAL_DTYPE [auto: bfloat16 on GPU, float32 on CPU]
#   EVAL_SEED [1234]  EVAL_DEVICE [cuda if available, else cpu]
#   EVAL_LIMIT        lm-eval --limit, for smoke runs only; such results are marked partial []
#   EVAL_DATA_DIR     folder with mmlu/, gsm8k/, hendrycks_math/ in the HF hub layout, read offline [];
#                     checked first (python -m mos_nemo.evaluation.data_check DIR; docs/evaluation.md)
#   EVAL_PROGRESS_SECONDS  how often lm-eval's progress is shown on the console [30]
#   EVAL_CHAT_TEMPLATE=1  lm-eval prompts through the chat template [0: plain prompts]
#   LM_EVAL_EXTRA_ARGS extra lm_eval arguments, e.g. "--gen_kwargs max_gen_toks=256" []
#   BENCHMARKS        lm-eval tasks or groups, one call each, "" for none ["mmlu gsm8k hendrycks_math"];
#                     any lm-eval task works, e.g. "mmlu gsm8k hendrycks_math ifeval"
#   NUM_FEWSHOT       shots of tasks other than the paper's, e.g. "bbh=3" [0]
#   MTBENCH           1 | 0 [1]   MTBENCH_QUESTION_IDS "81,82" [all 80]   MTBENCH_MAX_NEW_TOKENS [1024]
#   MTBENCH_BACKEND   hf | vllm | openai [openai with EVAL_BASE_URL, vllm with EVAL_BACKEND=vllm, else hf]
#   MODEL_ID          name of the answers and judgments [basename of MODEL]
#   OPENAI_API_BASE, OPENAI_API_KEY  the judge (OpenAI-compatible), required when MTBENCH=1
#   JUDGE_MODEL       judge name FastChat accepts (gpt-4, gpt-4-0613, gpt-3.5-turbo, ...) [gpt-4]
#   JUDGE_PARALLEL [1]  JUDGE_VENV [eval/.venv-judge]  MOS_EVAL_CACHE [~/.cache/mos_nemo/eval]
#   PYTHON            interpreter with mos_nemo and lm-eval [.venv/bin/python if present, else python3]
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
die() { echo "run_all: ERROR: $*" >&2; exit 2; }
log() { echo "run_all: $*" >&2; }
# fail_step LOG WHAT: die with one line naming WHAT, the error line of LOG and LOG's path.
fail_step() {
  local why
  why="$(tr '\r' '\n' <"$1" | grep -E 'ERROR|Error|error' | tail -n 1 | sed -E 's/^[a-z_]+: ERROR: //' | cut -c1-600)"
  die "$2: ${why:-$(tail -n 1 "$1" | cut -c1-600)} (log: $1)"
}
# run_step LOG_NAME WHAT CMD...: run CMD with its output in OUT/logs/LOG_NAME.log; on failure fail_step.
run_step() {
  local logf="$OUT/logs/$1.log" what="$2"
  shift 2
  "$@" >"$logf" 2>&1 || fail_step "$logf" "$what"
}
# run_with_progress LOG_NAME LABEL WHAT CMD...: run_step for long steps (lm-eval): says where the log is, then
# shows the command's latest progress bar (lm-eval's tqdm, read from the log) every EVAL_PROGRESS_SECONDS
# [30] when it moved, and once at the end.
run_with_progress() {
  local logf="$OUT/logs/$1.log" label="$2" what="$3" pid status=0 shown="" bar tick=0
  shift 3
  log "$label: running (log: $logf)"
  "$@" >"$logf" 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    tick=$((tick + 1))
    if ((tick % ${EVAL_PROGRESS_SECONDS:-30} == 0)); then
      bar="$(tr '\r' '\n' <"$logf" | grep -E '[0-9]+%\|' | tail -n 1 | cut -c1-160 || true)"
      [[ -n "$bar" && "$bar" != "$shown" ]] && log "$label: $bar" && shown="$bar"
    fi
  done
  wait "$pid" || status=$?
  bar="$(tr '\r' '\n' <"$logf" | grep -E '[0-9]+%\|' | tail -n 1 | cut -c1-160 || true)"
  [[ -n "$bar" && "$bar" != "$shown" ]] && log "$label: $bar"
  ((status == 0)) || fail_step "$logf" "$what"
}

[[ $# -eq 2 ]] || die "usage: eval/run_all.sh MODEL OUT (MODEL: run folder, step_N checkpoint, converted checkpoint or HF folder)"
CKPT="$1"
mkdir -p "$2" || die "cannot create output folder $2"
OUT="$(cd "$2" && pwd)"
[[ -e "$CKPT" ]] || die "model $CKPT does not exist"
CKPT="$(cd "$CKPT" && pwd)"
mkdir -p "$OUT/logs"

if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$REPO/.venv/bin/python" ]]; then PYTHON="$REPO/.venv/bin/python"; else PYTHON=python3; fi
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
"$PYTHON" -c "import lm_eval, mos_nemo" 2>/dev/null \
  || die "$PYTHON lacks lm-eval or mos_nemo: run \`pip install -e '.[eval]'\` (or set PYTHON)"

export EVAL_BACKEND="${EVAL_BACKEND:-hf}"
export EVAL_BASE_URL="${EVAL_BASE_URL:-}"
export EVAL_SEED="${EVAL_SEED:-1234}"
export EVAL_DEVICE="${EVAL_DEVICE:-$("$PYTHON" -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')}"
if [[ -z "${EVAL_DTYPE:-}" || "${EVAL_DTYPE}" == auto ]]; then
  if [[ "$EVAL_DEVICE" == cpu ]]; then EVAL_DTYPE=float32; else EVAL_DTYPE=bfloat16; fi
fi
export EVAL_DTYPE
if [[ -z "${EVAL_BATCH_SIZE:-}" ]]; then
  if [[ "$EVAL_BACKEND" == vllm ]]; then EVAL_BATCH_SIZE=auto; else EVAL_BATCH_SIZE=8; fi
fi
export EVAL_BATCH_SIZE
BENCHMARKS="${BENCHMARKS-mmlu gsm8k hendrycks_math}"
MTBENCH="${MTBENCH:-1}"
JUDGE_MODEL="${JUDGE_MODEL:-gpt-4}"
JUDGE_VENV="${JUDGE_VENV:-$HERE/.venv-judge}"
MODEL_ID="${MODEL_ID:-$(basename "$CKPT" | tr -c 'A-Za-z0-9._\n-' '_')}"
if [[ -z "${MTBENCH_BACKEND:-}" ]]; then
  if [[ -n "$EVAL_BASE_URL" ]]; then MTBENCH_BACKEND=openai
  elif [[ "$EVAL_BACKEND" == vllm ]]; then MTBENCH_BACKEND=vllm
  else MTBENCH_BACKEND=hf; fi
fi

# 1. The HF folder to evaluate: export a run's latest checkpoint, a step_N or a converted checkpoint.
run_step model_source "cannot find a model to evaluate in $CKPT" \
  "$PYTHON" -m mos_nemo.evaluation.model_source "$CKPT" "$OUT"
MODEL="$(tail -n 1 "$OUT/logs/model_source.log")"
log "evaluating $MODEL"

# 2. Preflight: fail in seconds, not after hours of benchmarks.
CHAT_CHECK=()
[[ "$MTBENCH" == 1 || "${EVAL_CHAT_TEMPLATE:-0}" == 1 ]] && CHAT_CHECK=(--chat)
run_step preflight_model "model $MODEL fails preflight" "$PYTHON" -m mos_nemo.evaluation.preflight model "$MODEL" "${CHAT_CHECK[@]}"
if [[ "$EVAL_BACKEND" == local-completions || "$MTBENCH_BACKEND" == openai ]]; then
  [[ -n "$EVAL_BASE_URL" ]] || die "EVAL_BACKEND=$EVAL_BACKEND / MTBENCH_BACKEND=$MTBENCH_BACKEND needs EVAL_BASE_URL"
  run_step preflight_server "generation server unusable" "$PYTHON" -m mos_nemo.evaluation.preflight server "$EVAL_BASE_URL"
fi
if [[ "$MTBENCH" == 1 ]]; then
  run_step preflight_judge "MT-bench judge unusable" "$PYTHON" -m mos_nemo.evaluation.preflight judge "$JUDGE_MODEL"
  source "$HERE/judge_venv.sh"
  ensure_judge_venv "$JUDGE_VENV" "$PYTHON" "$JUDGE_MODEL" "$OUT/logs/judge_venv.log"
fi

# 3. lm-eval: one call per benchmark, as --num_fewshot applies to a whole call.
INCLUDE_ARGS=()
if [[ -n "${EVAL_DATA_DIR:-}" ]]; then
  [[ -d "$EVAL_DATA_DIR" ]] || die "EVAL_DATA_DIR=$EVAL_DATA_DIR is not a folder"
  # The same check as `python -m mos_nemo.evaluation.data_check EVAL_DATA_DIR`: exit 1 = partial (warned).
  data_status=0
  "$PYTHON" -m mos_nemo.evaluation.data_check "$EVAL_DATA_DIR" >"$OUT/logs/data_check.log" 2>&1 || data_status=$?
  ((data_status <= 1)) || fail_step "$OUT/logs/data_check.log" "EVAL_DATA_DIR=$EVAL_DATA_DIR is not usable"
  ((data_status == 0)) || log "EVAL_DATA_DIR=$EVAL_DATA_DIR is partial, so are the results (log: $OUT/logs/data_check.log)"
  run_step local_tasks "cannot build lm-eval tasks from EVAL_DATA_DIR=$EVAL_DATA_DIR" \
    "$PYTHON" -m mos_nemo.evaluation.local_tasks "$EVAL_DATA_DIR" "$OUT/lm_eval_tasks"
  INCLUDE_ARGS=(--include_path "$OUT/lm_eval_tasks")
  export HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1
fi
EXTRA=()
[[ "${EVAL_CHAT_TEMPLATE:-0}" == 1 ]] && EXTRA+=(--apply_chat_template --fewshot_as_multiturn)
read -r -a USER_EXTRA <<<"${LM_EVAL_EXTRA_ARGS:-}"
for BENCH in $BENCHMARKS; do
  BENCH_DIR="$OUT/lm_eval/$BENCH"
  run_step "lm_eval_args_$BENCH" "bad lm-eval settings for $BENCH" \
    "$PYTHON" -m mos_nemo.evaluation.lm_eval_command "$BENCH" "$MODEL" "$BENCH_DIR"
  mapfile -t LM_ARGS <"$BENCH_DIR/lm_eval_args.txt"
  if [[ "${EVAL_FORCE:-0}" != 1 ]]; then
    if WHY="$("$PYTHON" -m mos_nemo.evaluation.run_steps lm-results-match "$BENCH_DIR" "$BENCH_DIR/expected_settings.json")"; then
      log "$BENCH: results with the same model, model args, limit and n-shot exist, kept (EVAL_FORCE=1 reruns)"
      continue
    fi
    log "$BENCH: not reusing earlier results ($WHY)"
  fi
  run_with_progress "lm_eval_$BENCH" "$BENCH: lm-eval ($EVAL_BACKEND${EVAL_LIMIT:+, limit $EVAL_LIMIT})" \
    "lm-eval failed on $BENCH" "$PYTHON" -m lm_eval "${LM_ARGS[@]}" "${INCLUDE_ARGS[@]}" "${EXTRA[@]}" "${USER_EXTRA[@]}"
done

# 4. MT-bench: answers with the model's chat template, then FastChat single-answer grading.
if [[ "$MTBENCH" == 1 ]]; then
  run_step mtbench_data "cannot prepare MT-bench data" \
    "$PYTHON" -m mos_nemo.evaluation.run_steps prepare-mtbench "$OUT" "$JUDGE_MODEL" "${MTBENCH_QUESTION_IDS:-}"
  QUESTIONS="$(tail -n 1 "$OUT/logs/mtbench_data.log")"
  ANSWERS="$OUT/mtbench/data/mt_bench/model_answer/$MODEL_ID.jsonl"
  log "MT-bench: answers for $MODEL_ID ($MTBENCH_BACKEND; log: $OUT/logs/mtbench_answers.log)"
  run_step mtbench_answers "MT-bench answer generation failed" \
    "$PYTHON" -m mos_nemo.evaluation.mtbench_answers --model "$MODEL" --model-id "$MODEL_ID" \
    --questions "$QUESTIONS" --out "$ANSWERS" --backend "$MTBENCH_BACKEND" ${EVAL_BASE_URL:+--base-url "$EVAL_BASE_URL"} \
    --served-model "${EVAL_SERVED_MODEL:-$MODEL}" --dtype "$EVAL_DTYPE" \
    --max-new-tokens "${MTBENCH_MAX_NEW_TOKENS:-1024}" --seed "$EVAL_SEED"
  TODO="$OUT/mtbench/judgments_todo.json"
  if TODO_COUNT="$("$PYTHON" -m mos_nemo.evaluation.run_steps judgments-todo "$OUT" "$JUDGE_MODEL" "$MODEL_ID" "$TODO")"; then
    log "MT-bench: all judgments present, not regraded"
  else
    log "MT-bench: $TODO_COUNT with FastChat llm_judge (judge $JUDGE_MODEL at $OPENAI_API_BASE; log: $OUT/logs/gen_judgment.log)"
    # FastChat's single-answer matches and judges, only for the pairs not yet validly graded; it reads
    # data/ relative to its working directory.
    run_step gen_judgment "FastChat grading failed" bash -c 'cd "$1" && shift && "$@"' _ "$OUT/mtbench" \
      "$JUDGE_VENV/bin/python" "$HERE/judge_missing.py" --model "$MODEL_ID" --judge-model "$JUDGE_MODEL" \
      --todo "$TODO" --parallel "${JUDGE_PARALLEL:-1}"
  fi
fi

# 5. The tables.
"$PYTHON" -m mos_nemo.evaluation.run_steps write-config "$OUT" "name=$MODEL_ID" "checkpoint=$CKPT" \
  "hf_model=$MODEL" "model_id=$MODEL_ID" "backend=$EVAL_BACKEND" "batch_size=$EVAL_BATCH_SIZE" \
  "dtype=$EVAL_DTYPE" "seed=$EVAL_SEED" "device=$EVAL_DEVICE" "limit=${EVAL_LIMIT:-}" \
  "data_dir=${EVAL_DATA_DIR:-hub}" "chat_template=${EVAL_CHAT_TEMPLATE:-0}" "benchmarks=$BENCHMARKS" \
  "mtbench=$MTBENCH" "mtbench_backend=$MTBENCH_BACKEND" "judge_model=$JUDGE_MODEL" \
  "judge_api_base=${OPENAI_API_BASE:-}" "mtbench_max_new_tokens=${MTBENCH_MAX_NEW_TOKENS:-1024}" \
  "num_fewshot=${NUM_FEWSHOT:-}"
run_step aggregate "aggregation failed" "$PYTHON" "$HERE/aggregate.py" "$OUT"
cat "$OUT/summary.md"
log "wrote $OUT/summary.json and $OUT/summary.md"
