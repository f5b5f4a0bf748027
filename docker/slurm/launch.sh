#!/bin/bash
# Submit one training job per recipe, each followed by its evaluation job (afterok), from the repository root.
#
#   docker/slurm/launch.sh [--dry-run] [--nodes N] [--no-eval] RECIPE [RECIPE ...] [-- key=value ...]
#
#   docker/slurm/launch.sh llama3_8b_mos                       the headline run on one node, then its eval
#   docker/slurm/launch.sh --nodes 2 qwen1_5_0_5b_temp gemma_2b_temp -- train.max_steps=100
#   docker/slurm/launch.sh --dry-run llama3_8b_mos             print the sbatch commands and the step command
#
# Everything after `--` is passed to mos_nemo/train.py as Hydra overrides. The environment (MOS_IMAGE,
# MOS_RUNS, MOS_NEMO_MODELS, MOS_NEMO_PAPER_DATA, OPENAI_API_*, ...) is exported to the jobs; see
# train.sbatch and eval.sbatch for what they read.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
usage() { sed -n 2,12p "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }

DRY_RUN=0 NODES=1 EVAL=1 RECIPES=() OVERRIDES=()
while (($#)); do
  case "$1" in
    --dry-run) DRY_RUN=1 ;;
    --nodes) [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]*$ ]] || { echo "launch.sh: --nodes needs a number >= 1" >&2; exit 2; }
             NODES="$2"; shift ;;
    --no-eval) EVAL=0 ;;
    --) shift; OVERRIDES=("$@"); break ;;
    -h|--help) usage ;;
    -*) echo "launch.sh: unknown option $1" >&2; usage ;;
    *) RECIPES+=("$1") ;;
  esac
  shift
done
((${#RECIPES[@]})) || usage
for recipe in "${RECIPES[@]}"; do
  if [[ ! -f "$REPO/recipes/$recipe.yaml" ]]; then
    known=("$REPO"/recipes/*.yaml)
    known=("${known[@]##*/}")
    echo "launch.sh: no recipe recipes/$recipe.yaml; known: ${known[*]%.yaml}" >&2
    exit 2
  fi
done

# show CMD...: the command as one line that a shell runs as is (quotes only where needed)
show() {
  local word line=""
  for word in "$@"; do
    if [[ "$word" =~ ^[A-Za-z0-9_./:=,%@+-]+$ ]]; then line+="$word "; else line+="${word@Q} "; fi
  done
  echo "${line% }"
}

cd "$REPO"  # the jobs' submit directory: logs/ and runs/ are relative to it
((DRY_RUN)) || mkdir -p logs
for recipe in "${RECIPES[@]}"; do
  train=(sbatch --parsable --job-name "mos-$recipe" --nodes "$NODES" --export "ALL,RECIPE=$recipe"
         docker/slurm/train.sbatch "${OVERRIDES[@]}")
  evaluate=(sbatch --parsable --job-name "mos-eval-$recipe" --dependency "afterok:TRAIN_JOB_ID"
            --export "ALL,RECIPE=$recipe" docker/slurm/eval.sbatch)
  if ((DRY_RUN)); then
    echo "# $recipe"
    show "${train[@]}"
    printf '  step on each node: '
    SLURM_NNODES="$NODES" SLURM_JOB_NAME="mos-$recipe" SLURM_SUBMIT_DIR="$REPO" MOS_DRY_RUN=1 RECIPE="$recipe" \
      bash docker/slurm/train.sbatch "${OVERRIDES[@]}"
    if ((EVAL)); then
      show "${evaluate[@]}"
      printf '  eval step: '
      SLURM_SUBMIT_DIR="$REPO" MOS_DRY_RUN=1 RECIPE="$recipe" bash docker/slurm/eval.sbatch
    fi
    continue
  fi
  job="$("${train[@]}")"
  echo "launch.sh: $recipe: training job $job (logs/mos-$recipe-$job.out)"
  if ((EVAL)); then
    evaluate[5]="afterok:$job"
    echo "launch.sh: $recipe: evaluation job $("${evaluate[@]}") after $job"
  fi
done
