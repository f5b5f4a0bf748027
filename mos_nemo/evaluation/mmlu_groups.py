"""The paper's three MMLU subject groups (paper Table 7; eval/README.md).

lm-eval's own four categories (stem, humanities, ...) are not the paper's groups, so group accuracies are
recomputed from per-subject accuracies. The paper's mu_MU and group accuracies are PLAIN means over
subjects (every row of paper Table 1 satisfies mu_MU = (5 Math + 9 Med. + 43 Others) / 57 to 0.01);
lm-eval's `mmlu` group figure weights subjects by sample count, which moves mu_MU by 0.1-0.4 points. Both
are computed; the tables report the plain mean.
"""

from __future__ import annotations

from mos_nemo.errors import MosValueError

MATHEMATICS = (
    "abstract_algebra",
    "college_mathematics",
    "elementary_mathematics",
    "high_school_mathematics",
    "high_school_statistics",
)
MEDICINE = (
    "anatomy",
    "clinical_knowledge",
    "college_medicine",
    "human_aging",
    "human_sexuality",
    "medical_genetics",
    "nutrition",
    "professional_medicine",
    "virology",
)
OTHERS = (
    "astronomy", "business_ethics", "college_biology", "college_chemistry", "college_computer_science",
    "college_physics", "computer_security", "conceptual_physics", "econometrics", "electrical_engineering",
    "formal_logic", "global_facts", "high_school_biology", "high_school_chemistry",
    "high_school_computer_science", "high_school_european_history", "high_school_geography",
    "high_school_government_and_politics", "high_school_macroeconomics", "high_school_microeconomics",
    "high_school_physics", "high_school_psychology", "high_school_us_history", "high_school_world_history",
    "international_law", "jurisprudence", "logical_fallacies", "machine_learning", "management", "marketing",
    "miscellaneous", "moral_disputes", "moral_scenarios", "philosophy", "prehistory",
    "professional_accounting", "professional_law", "professional_psychology", "public_relations",
    "security_studies", "sociology", "us_foreign_policy", "world_religions",
)  # fmt: skip
GROUPS = {"math": MATHEMATICS, "med": MEDICINE, "others": OTHERS}
ALL_SUBJECTS = MATHEMATICS + MEDICINE + OTHERS
_GROUP_OF = {subject: group for group, subjects in GROUPS.items() for subject in subjects}


def group_of(subject: str) -> str:
    """'math', 'med' or 'others' for an MMLU subject name such as 'college_medicine'."""
    if subject not in _GROUP_OF:
        raise MosValueError(
            f"unknown MMLU subject {subject!r}: expected one of the 57 subjects of paper Table 7 "
            "(lm-eval task names are mmlu_<subject>)"
        )
    return _GROUP_OF[subject]


def plain_accuracy(per_subject: dict[str, tuple[float, int]], subjects,
                   stderrs: dict[str, float | None] | None = None) -> tuple[float, int, float | None]:
    """Plain mean of the accuracies of `subjects` present in `per_subject` (paper Table 1: mu_MU and
    the groups), with the number of subjects and the mean's standard error sqrt(sum se_i^2) / k
    (subjects are independent samples; None if any se_i is unknown). (nan, 0, None) if none is present."""
    present = [s for s in subjects if s in per_subject]
    if not present:
        return float("nan"), 0, None
    mean = sum(per_subject[s][0] for s in present) / len(present)
    errors = [(stderrs or {}).get(s) for s in present]
    stderr = None if any(e is None for e in errors) else sum(e * e for e in errors) ** 0.5 / len(present)
    return mean, len(present), stderr


def weighted_accuracy(per_subject: dict[str, tuple[float, int]], subjects) -> tuple[float, int]:
    """Accuracy over `subjects` present in `per_subject` ({subject: (acc, n)}), weighted by n.

    Returns (accuracy in [0, 1], total sample count); (nan, 0) if none of the subjects was evaluated.
    """
    present = [per_subject[s] for s in subjects if s in per_subject]
    total = sum(n for _, n in present)
    if total == 0:
        return float("nan"), 0
    return sum(acc * n for acc, n in present) / total, total
