"""MT-bench scores from FastChat single-answer judgments (paper Table 1: Turn 1, Turn 2, mu_MB).

FastChat's `gen_judgment.py` appends to `model_judgment/<judge>_single.jsonl` and regrades everything on a
rerun, so a file can hold several judgments of one (model, question, turn). We keep only the newest
(largest `tstamp`, file order breaking ties), so reruns never double-count. A grading whose reply held no
`[[rating]]` is stored by FastChat with score -1, and so is a judge call that failed (judgment "$ERROR$");
both are counted, apart (`n_unparsable`, `n_judge_errors`), and are an error for the caller, as is a
question/turn that was never graded. mu_MB is the mean over all gradings of both turns, as FastChat's
`show_result.py` computes it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from mos_nemo.errors import MosDataError
from mos_nemo.evaluation.mtbench_data import read_jsonl

JUDGE_ERROR = "$ERROR$"  # FastChat's judgment text when the judge API call failed


@dataclass
class MTBenchScores:
    """Scores on FastChat's 1-10 scale; counts of gradings used, failed (-1) and missing."""

    turn1: float
    turn2: float
    average: float
    n_graded: int
    n_failed: int
    missing: list[str] = field(default_factory=list)
    n_duplicates_dropped: int = 0
    n_unparsable: int = 0  # of n_failed: the judge replied, but without a [[rating]] FastChat could parse
    n_judge_errors: int = 0  # of n_failed: the judge call itself failed (FastChat's "$ERROR$")

    def describe_failures(self) -> str:
        return (f"{self.n_failed} gradings failed (score -1): {self.n_unparsable} judge verdicts without a "
                f"parsable [[rating]], {self.n_judge_errors} judge calls that failed")

    def to_dict(self) -> dict:
        return asdict(self)


def latest_judgments(rows: list[dict], model: str) -> dict[tuple[int, int], dict]:
    """{(question_id, turn): newest judgment row} for one model."""
    latest: dict[tuple[int, int], dict] = {}
    for row in rows:
        if row.get("model") != model:
            continue
        key = (row["question_id"], row["turn"])
        if key not in latest or row.get("tstamp", 0) >= latest[key].get("tstamp", 0):
            latest[key] = row
    return latest


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def score_judgments(judgment_file: Path, model: str, questions: list[dict]) -> MTBenchScores:
    """Turn 1, turn 2 and overall means over the newest judgment of every (question, turn)."""
    if not Path(judgment_file).is_file():
        raise MosDataError(f"{judgment_file}: no judgments found; did gen_judgment run?")
    rows = read_jsonl(Path(judgment_file))
    latest = latest_judgments(rows, model)
    duplicates = sum(1 for r in rows if r.get("model") == model) - len(latest)
    expected = [(q["question_id"], turn) for q in questions for turn in range(1, len(q["turns"]) + 1)]
    missing = [f"question {qid} turn {turn}" for qid, turn in expected if (qid, turn) not in latest]
    graded = {key: latest[key]["score"] for key in expected if key in latest}
    good = {key: float(score) for key, score in graded.items() if score != -1}
    errors = sum(1 for key in graded if graded[key] == -1 and latest[key].get("judgment") == JUDGE_ERROR)
    return MTBenchScores(
        turn1=_mean([s for (_, turn), s in good.items() if turn == 1]),
        turn2=_mean([s for (_, turn), s in good.items() if turn == 2]),
        average=_mean(list(good.values())),
        n_graded=len(good),
        n_failed=len(graded) - len(good),
        missing=missing,
        n_duplicates_dropped=duplicates,
        n_unparsable=len(graded) - len(good) - errors,
        n_judge_errors=errors,
    )


def check_complete(scores: MTBenchScores, judgment_file: Path) -> None:
    """Raise if any grading failed (score -1) or is missing: such a mu_MB would not be the paper's."""
    if scores.n_failed or scores.missing:
        raise MosDataError(
            f"{judgment_file}: {scores.describe_failures()}; {len(scores.missing)} are missing {scores.missing[:4]}; rerun eval/run_all.sh to regrade "
            "(only the newest judgment of each question and turn is counted)"
        )


def pairs_to_grade(judgment_file: Path, model: str, questions: list[dict]) -> list[tuple[int, int]]:
    """The (question_id, turn) pairs whose newest judgment is missing or failed (score -1)."""
    latest = latest_judgments(read_jsonl(Path(judgment_file)), model) if Path(judgment_file).is_file() else {}
    expected = [(q["question_id"], turn) for q in questions for turn in range(1, len(q["turns"]) + 1)]
    return [key for key in expected if key not in latest or latest[key]["score"] == -1]


def is_complete(judgment_file: Path, model: str, questions: list[dict]) -> bool:
    """True if every (question, turn) already has a valid newest judgment: then no regrading is needed."""
    if not Path(judgment_file).is_file():
        return False
    scores = score_judgments(judgment_file, model, questions)
    return not scores.n_failed and not scores.missing


def category_scores(judgment_file: Path, model: str, questions: list[dict]) -> dict[str, dict]:
    """{category: {"score": mean over both turns, "turn1", "turn2", "n"}} over the newest valid gradings
    (FastChat's eight categories: writing, roleplay, reasoning, math, coding, extraction, stem, humanities)."""
    latest = latest_judgments(read_jsonl(Path(judgment_file)), model)
    category = {q["question_id"]: q.get("category", "unknown") for q in questions}
    by_category: dict[str, dict[int, list[float]]] = {}
    for (qid, turn), row in latest.items():
        if qid in category and row["score"] != -1:
            by_category.setdefault(category[qid], {1: [], 2: []}).setdefault(turn, []).append(float(row["score"]))
    return {name: {"score": _mean(turns[1] + turns[2]), "turn1": _mean(turns[1]), "turn2": _mean(turns[2]),
                   "n": len(turns[1]) + len(turns[2])} for name, turns in sorted(by_category.items())}  # fmt: skip
