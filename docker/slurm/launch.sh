#!/bin/bash
# Submit one training job per recipe, each followed by its evaluation job (afterok), from the repository root.
#
#   docker/slurm/launch.sh [--dry-run] [--nodes N] [--no-eval] [SBATCH OPTIONS] RECIPE [RECIPE ...] [-- key=value ...]
#
#   docker/slurm/launch.sh llama3_8b_mos                       the headline run on one node, then its eval
#   docker/slurm/launch.sh --nodes 2 qwen1_5_0_5b_temp gemma_2b_temp -- train.max_steps=100
#   docker/slurm/launch.sh --partition gpu --account proj --time 08:00:00 --qos high llama3_8b_mos
#   docker/slurm/launch.sh --dry-run llama3_8b_mos             print the sbatch commands and the step command
#
# SBATCH OPTIONS: --partition P, --account A, --qos Q and --sbatch OPT (any other sbatch option, verbatim,
# repeatable, e.g. --sbatch --reservation=r1) go to both jobs; --time T to the training job, --eval-time T
# and --eval-gpus N (default 1: the hf backend uses one GPU; more only for vLLM tensor parallel) to the
# evaluation job. Everything after `--` is passed to mos_nemo/train.py as Hydra overrides. The environment
# (MOS_IMAGE, MOS_RUNS, MOS_NEMO_MODELS, MOS_NEMO_PAPER_DATA, EVAL_DATA_DIR, OPENAI_API_*, ...) is exported
# to the jobs; see train.sbatch and eval.sbatch for what they read. With the evaluation (the default), the
# judge (OPENAI_API_BASE, unless MTBENCH=0) and the offline benchmark data (EVAL_DATA_DIR) are checked here,
# before anything is submitted.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
usage() { sed -n 2,18p "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
die() { echo "launch.sh: $*" >&2; exit 2; }
# value OPTION ARGS...: the option's value (the next argument), or an error naming the option
value() { [[ $# -ge 3 && -n "$3" && "$3" != --* ]] || die "$1 needs a value"; }

DRY_RUN=0 NODES=1 EVAL=1 EVAL_GPUS=1 RECIPES=() OVERRIDES=() BOTH=() TRAIN_ONLY=() EVAL_ONLY=()
while (($#)); do
  case "$1" in
    --dry-run) DRY_RUN=1 ;;
    --nodes) [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]*$ ]] || { echo "launch.sh: --nodes needs a number >= 1" >&2; exit 2; }
             NODES="$2"; shift ;;
    --eval-gpus) [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]*$ ]] || die "--eval-gpus needs a number >= 1"
                 EVAL_GPUS="$2"; shift ;;
    --partition|--account|--qos) value "$1" "$@"; BOTH+=("$1=$2"); shift ;;
    --time) value "$1" "$@"; TRAIN_ONLY+=("--time=$2"); shift ;;
    --eval-time) value "$1" "$@"; EVAL_ONLY+=("--time=$2"); shift ;;
    --sbatch) [[ $# -ge 2 && "$2" == -* ]] || die "--sbatch needs an sbatch option, e.g. --sbatch --reservation=r1"
              BOTH+=("$2"); shift ;;
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

if ((EVAL)); then
  if [[ "${MTBENCH:-1}" == 1 && -z "${OPENAI_API_BASE:-}" ]]; then
    die "the evaluation job grades MT-bench with the judge at OPENAI_API_BASE, which is not set: export " \
        "OPENAI_API_BASE (and OPENAI_API_KEY), or MTBENCH=0 to skip MT-bench, or --no-eval"
  fi
  if [[ -z "${EVAL_DATA_DIR:-}" || ! -d "${EVAL_DATA_DIR:-}" ]]; then
    die "the evaluation job reads MMLU, GSM8K and MATH offline from EVAL_DATA_DIR" \
        "(${EVAL_DATA_DIR:-not set}: not a folder); fill it as docs/evaluation.md says, or --no-eval"
  fi
fi

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
  train=(sbatch --parsable --job-name "mos-$recipe" --nodes "$NODES" --output "logs/%x-%j.out"
         "${BOTH[@]}" "${TRAIN_ONLY[@]}" --export "ALL,RECIPE=$recipe" docker/slurm/train.sbatch "${OVERRIDES[@]}")
  evaluate=(sbatch --parsable --job-name "mos-eval-$recipe" --dependency "afterok:TRAIN_JOB_ID"
            --output "logs/%x-%j.out" --gpus-per-node "$EVAL_GPUS" "${BOTH[@]}" "${EVAL_ONLY[@]}"
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
    evaluate[5]="afterok:$job"  # the --dependency value
    echo "launch.sh: $recipe: evaluation job $("${evaluate[@]}") after $job"
  fi
done
