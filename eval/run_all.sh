#!/usr/bin/env bash
# Evaluate a checkpoint the way the paper does (Appendix D; SPEC.md "Evaluation") and write
# OUT/summary.json and OUT/summary.md (paper Tables 1 and 4).
#
#   eval/run_all.sh CKPT OUT
#
# CKPT: an HF model folder (has config.json) or a mos_nemo checkpoint directory, which is first exported
# to OUT/hf_model with `python -m mos_nemo.convert export`.
# Steps: preflight (model loads, judge and servers answer) -> lm-eval MMLU 0-shot, GSM8K 5-shot, MATH
# 5-shot (one call each) -> MT-bench answers (model's chat template) -> FastChat llm_judge single-answer
# grading in its own virtualenv -> eval/aggregate.py. Finished steps are kept on a rerun (EVAL_FORCE=1
# redoes the lm-eval calls); judgments are regraded only if some are missing or failed, and only the
# newest judgment of each question and turn is counted.
#
# Environment (defaults in brackets):
#   EVAL_BACKEND      hf | vllm | local-completions [hf]  (local-completions: an OpenAI-compatible
#                     completions server at EVAL_BASE_URL, e.g. `vllm serve DIR`, with logprobs)
#   EVAL_BASE_URL     OpenAI-compatible server root, e.g. http://127.0.0.1:8000/v1 []; also makes MT-bench
#                     answers come from its chat endpoint (MTBENCH_BACKEND=openai)
#   EVAL_SERVED_MODEL model name on that server [CKPT path]
#   EVAL_BATCH_SIZE [8]  EVAL_DTYPE [auto: bfloat16 on GPU, float32 on CPU]  EVAL_SEED [1234]
#   EVAL_DEVICE [cuda if available, else cpu]  EVAL_LIMIT [] (lm-eval --limit, for smoke runs only)
#   EVAL_DATA_DIR     folder with mmlu/, gsm8k/, hendrycks_math/ in the HF hub layout, read offline []
#   EVAL_CHAT_TEMPLATE=1  lm-eval prompts through the chat template [0: plain prompts]
#   LM_EVAL_EXTRA_ARGS extra lm_eval arguments, e.g. "--gen_kwargs max_gen_toks=256" []
#   BENCHMARKS        lm-eval benchmarks to run, "" for none ["mmlu gsm8k hendrycks_math"]
#   MTBENCH           1 | 0 [1]   MTBENCH_QUESTION_IDS "81,82" [all 80]   MTBENCH_MAX_NEW_TOKENS [1024]
#   MODEL_ID          name of the answers and judgments [basename of CKPT]
#   OPENAI_API_BASE, OPENAI_API_KEY  the judge (OpenAI-compatible), required when MTBENCH=1
#   JUDGE_MODEL       judge name FastChat accepts (gpt-4, gpt-4-0613, gpt-3.5-turbo, ...) [gpt-4]
#   JUDGE_PARALLEL [1]  JUDGE_VENV [eval/.venv-judge]  MOS_EVAL_CACHE [~/.cache/mos_nemo/eval]
#   PYTHON            interpreter with mos_nemo and lm-eval [.venv/bin/python if present, else python3]
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
die() { echo "run_all: ERROR: $*" >&2; exit 2; }
log() { echo "run_all: $*" >&2; }
# run_step LOG_NAME WHAT CMD...: run CMD with its output in OUT/logs/LOG_NAME.log; on failure die with one
# line naming WHAT, the error line of the log and the log's path.
run_step() {
  local logf="$OUT/logs/$1.log" what="$2" why
  shift 2
  if ! "$@" >"$logf" 2>&1; then
    why="$(grep -E 'ERROR|Error|error' "$logf" | tail -n 1 | sed -E 's/^[a-z_]+: ERROR: //' | cut -c1-300)"
    die "$what: ${why:-$(tail -n 1 "$logf" | cut -c1-300)} (log: $logf)"
  fi
}

[[ $# -eq 2 ]] || die "usage: eval/run_all.sh CKPT OUT"
CKPT="$1"
mkdir -p "$2" || die "cannot create output folder $2"
OUT="$(cd "$2" && pwd)"
[[ -e "$CKPT" ]] || die "checkpoint $CKPT does not exist"
CKPT="$(cd "$CKPT" && pwd)"
mkdir -p "$OUT/logs"

if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$REPO/.venv/bin/python" ]]; then PYTHON="$REPO/.venv/bin/python"; else PYTHON=python3; fi
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
"$PYTHON" -c "import lm_eval, mos_nemo" 2>/dev/null \
  || die "$PYTHON lacks lm-eval or mos_nemo: run \`pip install -e '.[eval]'\` (or set PYTHON)"

EVAL_BACKEND="${EVAL_BACKEND:-hf}"
EVAL_BASE_URL="${EVAL_BASE_URL:-}"
EVAL_BATCH_SIZE="${EVAL_BATCH_SIZE:-8}"
EVAL_SEED="${EVAL_SEED:-1234}"
EVAL_DEVICE="${EVAL_DEVICE:-$("$PYTHON" -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')}"
if [[ -z "${EVAL_DTYPE:-}" || "${EVAL_DTYPE}" == auto ]]; then
  if [[ "$EVAL_DEVICE" == cpu ]]; then EVAL_DTYPE=float32; else EVAL_DTYPE=bfloat16; fi
fi
BENCHMARKS="${BENCHMARKS-mmlu gsm8k hendrycks_math}"
MTBENCH="${MTBENCH:-1}"
JUDGE_MODEL="${JUDGE_MODEL:-gpt-4}"
JUDGE_VENV="${JUDGE_VENV:-$HERE/.venv-judge}"
MODEL_ID="${MODEL_ID:-$(basename "$CKPT" | tr -c 'A-Za-z0-9._\n-' '_')}"
MTBENCH_BACKEND="${MTBENCH_BACKEND:-$([[ -n "$EVAL_BASE_URL" ]] && echo openai || echo hf)}"

# 1. An HF folder to evaluate: export a mos_nemo checkpoint first.
if [[ -f "$CKPT/config.json" ]]; then
  MODEL="$CKPT"
else
  MODEL="$OUT/hf_model"
  if [[ ! -f "$MODEL/config.json" ]]; then
    log "exporting mos_nemo checkpoint $CKPT to $MODEL"
    run_step export "checkpoint $CKPT has no config.json and its export with mos_nemo.convert failed" \
      "$PYTHON" -m mos_nemo.convert export --ckpt "$CKPT" --out "$MODEL"
  fi
fi

# 2. Preflight: fail in seconds, not after hours of benchmarks.
run_step preflight_model "checkpoint $CKPT does not load" "$PYTHON" -m mos_nemo.evaluation.preflight model "$MODEL"
if [[ "$EVAL_BACKEND" == local-completions || "$MTBENCH_BACKEND" == openai ]]; then
  [[ -n "$EVAL_BASE_URL" ]] || die "EVAL_BACKEND=$EVAL_BACKEND / MTBENCH_BACKEND=$MTBENCH_BACKEND needs EVAL_BASE_URL"
  run_step preflight_server "generation server unusable" "$PYTHON" -m mos_nemo.evaluation.preflight server "$EVAL_BASE_URL"
fi
if [[ "$MTBENCH" == 1 ]]; then
  run_step preflight_judge "MT-bench judge unusable" "$PYTHON" -m mos_nemo.evaluation.preflight judge
  source "$HERE/judge_venv.sh"
  ensure_judge_venv "$JUDGE_VENV" "$PYTHON" "$JUDGE_MODEL" "$OUT/logs/judge_venv.log"
fi

# 3. lm-eval: one call per benchmark, as --num_fewshot applies to a whole call.
INCLUDE_ARGS=()
if [[ -n "${EVAL_DATA_DIR:-}" ]]; then
  [[ -d "$EVAL_DATA_DIR" ]] || die "EVAL_DATA_DIR=$EVAL_DATA_DIR is not a folder"
  run_step local_tasks "cannot build lm-eval tasks from EVAL_DATA_DIR=$EVAL_DATA_DIR" \
    "$PYTHON" -m mos_nemo.evaluation.local_tasks "$EVAL_DATA_DIR" "$OUT/lm_eval_tasks"
  INCLUDE_ARGS=(--include_path "$OUT/lm_eval_tasks")
  export HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1
fi
case "$EVAL_BACKEND" in
  hf) LM_MODEL=(--model hf --model_args "pretrained=$MODEL,dtype=$EVAL_DTYPE" --device "$EVAL_DEVICE") ;;
  vllm) LM_MODEL=(--model vllm --model_args "pretrained=$MODEL,dtype=$EVAL_DTYPE,seed=$EVAL_SEED") ;;
  local-completions)
    LM_MODEL=(--model local-completions --model_args
      "model=${EVAL_SERVED_MODEL:-$MODEL},base_url=${EVAL_BASE_URL%/}/completions,tokenizer=$MODEL,tokenized_requests=False") ;;
  *) die "EVAL_BACKEND=$EVAL_BACKEND: use hf, vllm or local-completions" ;;
esac
EXTRA=()
[[ -n "${EVAL_LIMIT:-}" ]] && EXTRA+=(--limit "$EVAL_LIMIT")
[[ "${EVAL_CHAT_TEMPLATE:-0}" == 1 ]] && EXTRA+=(--apply_chat_template --fewshot_as_multiturn)
read -r -a USER_EXTRA <<<"${LM_EVAL_EXTRA_ARGS:-}"
for BENCH in $BENCHMARKS; do
  case "$BENCH" in mmlu) SHOTS=0 ;; gsm8k | hendrycks_math) SHOTS=5 ;; *) die "unknown benchmark $BENCH" ;; esac
  if [[ "${EVAL_FORCE:-0}" != 1 ]] && compgen -G "$OUT/lm_eval/$BENCH/*/results_*.json" >/dev/null; then
    log "$BENCH: results exist, kept (EVAL_FORCE=1 reruns)"
    continue
  fi
  log "$BENCH: lm-eval $SHOTS-shot ($EVAL_BACKEND)"
  run_step "lm_eval_$BENCH" "lm-eval failed on $BENCH" \
    "$PYTHON" -m lm_eval "${LM_MODEL[@]}" --tasks "$BENCH" --num_fewshot "$SHOTS" \
    --batch_size "$EVAL_BATCH_SIZE" --seed "$EVAL_SEED" --output_path "$OUT/lm_eval/$BENCH" --log_samples \
    "${INCLUDE_ARGS[@]}" "${EXTRA[@]}" "${USER_EXTRA[@]}"
done

# 4. MT-bench: answers with the model's chat template, then FastChat single-answer grading.
if [[ "$MTBENCH" == 1 ]]; then
  run_step mtbench_data "cannot prepare MT-bench data" \
    "$PYTHON" -m mos_nemo.evaluation.run_steps prepare-mtbench "$OUT" "$JUDGE_MODEL" "${MTBENCH_QUESTION_IDS:-}"
  QUESTIONS="$(tail -n 1 "$OUT/logs/mtbench_data.log")"
  ANSWERS="$OUT/mtbench/data/mt_bench/model_answer/$MODEL_ID.jsonl"
  log "MT-bench: answers for $MODEL_ID ($MTBENCH_BACKEND)"
  run_step mtbench_answers "MT-bench answer generation failed" \
    "$PYTHON" -m mos_nemo.evaluation.mtbench_answers --model "$MODEL" --model-id "$MODEL_ID" \
    --questions "$QUESTIONS" --out "$ANSWERS" --backend "$MTBENCH_BACKEND" ${EVAL_BASE_URL:+--base-url "$EVAL_BASE_URL"} \
    --served-model "${EVAL_SERVED_MODEL:-$MODEL}" --dtype "$EVAL_DTYPE" \
    --max-new-tokens "${MTBENCH_MAX_NEW_TOKENS:-1024}" --seed "$EVAL_SEED"
  if "$PYTHON" -m mos_nemo.evaluation.run_steps judgments-complete "$OUT" "$JUDGE_MODEL" "$MODEL_ID"; then
    log "MT-bench: all judgments present, not regraded"
  else
    log "MT-bench: grading with FastChat llm_judge (judge $JUDGE_MODEL at $OPENAI_API_BASE)"
    # gen_judgment reads data/ relative to its working directory and waits for Enter before grading.
    run_step gen_judgment "FastChat gen_judgment failed" bash -c 'cd "$1" && shift && echo | "$@"' _ "$OUT/mtbench" \
      "$JUDGE_VENV/bin/python" -m fastchat.llm_judge.gen_judgment --mode single --model-list "$MODEL_ID" \
      --judge-model "$JUDGE_MODEL" --parallel "${JUDGE_PARALLEL:-1}"
  fi
fi

# 5. The tables.
"$PYTHON" -m mos_nemo.evaluation.run_steps write-config "$OUT" "name=$MODEL_ID" "checkpoint=$CKPT" \
  "hf_model=$MODEL" "model_id=$MODEL_ID" "backend=$EVAL_BACKEND" "batch_size=$EVAL_BATCH_SIZE" \
  "dtype=$EVAL_DTYPE" "seed=$EVAL_SEED" "device=$EVAL_DEVICE" "limit=${EVAL_LIMIT:-}" \
  "data_dir=${EVAL_DATA_DIR:-hub}" "chat_template=${EVAL_CHAT_TEMPLATE:-0}" "benchmarks=$BENCHMARKS" \
  "mtbench=$MTBENCH" "mtbench_backend=$MTBENCH_BACKEND" "judge_model=$JUDGE_MODEL" \
  "judge_api_base=${OPENAI_API_BASE:-}" "mtbench_max_new_tokens=${MTBENCH_MAX_NEW_TOKENS:-1024}"
run_step aggregate "aggregation failed" "$PYTHON" "$HERE/aggregate.py" "$OUT"
cat "$OUT/summary.md"
log "wrote $OUT/summary.json and $OUT/summary.md"
