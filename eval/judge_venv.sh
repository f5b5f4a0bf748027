# Sourced by run_all.sh (or run `bash eval/judge_venv.sh [VENV]` to build it ahead of time).
# FastChat's llm_judge (fschat 0.2.36, the last release) needs `openai<1`, which must not enter the main
# virtualenv, so it gets its own. gen_judgment imports torch and transformers (through FastChat's model
# adapter) without using them for API judges; rather than a second multi-GB torch, a .pth file appends the
# main interpreter's site-packages after the judge venv's own, so openai<1 still wins.
JUDGE_REQUIREMENTS='fschat[llm_judge]==0.2.36 openai<1'

ensure_judge_venv() {  # VENV MAIN_PYTHON JUDGE_MODEL LOG
  local venv="$1" main_py="$2" judge="$3" logf="$4"
  if [[ ! -f "$venv/.installed" || "$(cat "$venv/.installed")" != "$JUDGE_REQUIREMENTS" ]]; then
    echo "run_all: building the FastChat judge virtualenv $venv (once)" >&2
    local base_py
    base_py="$("$main_py" -c 'import sys; print(getattr(sys, "_base_executable", sys.executable))')"
    { "$base_py" -m venv "$venv" && "$venv/bin/python" -m pip install -q $JUDGE_REQUIREMENTS; } >"$logf" 2>&1 \
      || { echo "run_all: ERROR: cannot build the judge virtualenv $venv (see $logf: $(tail -n 1 "$logf"))" >&2; exit 2; }
    local main_site judge_site
    main_site="$("$main_py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    judge_site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    echo "$main_site" >"$judge_site/zz_mos_nemo_main_venv.pth"
    rm -f "$venv/fastchat_judge_names.txt"
    echo "$JUDGE_REQUIREMENTS" >"$venv/.installed"
  fi
  # FastChat accepts only judge names from its OPENAI_MODEL_LIST; read it once (importing FastChat takes
  # seconds, as it imports torch) and keep it beside the venv.
  local names="$venv/fastchat_judge_names.txt"
  if [[ ! -s "$names" ]]; then
    "$venv/bin/python" -c 'import openai; assert openai.__version__.startswith("0."), openai.__version__
from fastchat.model.model_adapter import OPENAI_MODEL_LIST; print("\n".join(OPENAI_MODEL_LIST))' >"$names.tmp" 2>>"$logf" \
      && mv "$names.tmp" "$names" \
      || { echo "run_all: ERROR: FastChat does not import in $venv (see $logf: $(tail -n 1 "$logf"))" >&2; exit 2; }
  fi
  grep -qxF "$judge" "$names" \
    || { echo "run_all: ERROR: JUDGE_MODEL=$judge is not a judge name FastChat accepts ($(tr '\n' ' ' <"$names")); serve the judge under one of them" >&2; exit 2; }
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  py="${PYTHON:-$(dirname "$here")/.venv/bin/python}"
  ensure_judge_venv "${1:-$here/.venv-judge}" "$py" "${JUDGE_MODEL:-gpt-4}" "/tmp/judge_venv_$$.log"
  echo "judge virtualenv ready: ${1:-$here/.venv-judge}"
fi
