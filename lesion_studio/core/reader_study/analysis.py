"""Reader-study statistics: can readers tell real from synthetic lesions? (numpy/scipy only)

`analyze_study(study_dir, key_path)` joins every session in `sessions/` to the answer key and
returns one plain dict (JSON-ready; the GUI dashboard renders it, `write_results` saves it):

```
{"format": "lesion-studio-reader-study-results", "version": 1,
 "study_id", "name", "n_cases": {"real", "synthetic", "lesion-free"}, "confidence_levels",
 "alpha": 0.05, "target_accuracy": 0.65, "power_needed": 0.8, "n_bootstrap", "seed",
 "readers": {reader_id: STATS},          # every session, humans and machines
 "pooled": STATS | None,                 # every human reader together (None: no human yet)
 "kappa": {"cohen": [{"readers": [a, b], "n", "kappa"}], "fleiss": {"readers", "n", "kappa"} | None},
 "power_65": float | None, "verdict": str, # of the pooled humans (else the only reader)
 "warnings": [str]}

STATS = {"reader", "kind": "human" | "machine" | "pooled", "n_readers", "n_answered", "finished",
         "n", "n_cases", "n_correct", "accuracy", "accuracy_ci": [lo, hi], "accuracy_ci_method",
         "sensitivity", "specificity",          # for spotting synthetic (positive = synthetic)
         "auc", "auc_ci": [lo, hi] | None,       # from the 2·levels-point score; CI: bootstrap over cases
         "roc": {"fpr": [...], "tpr": [...], "thresholds": [...]},
         "confusion": {truth: {call: count}},    # truth real/synthetic × call real/synthetic
         "p_binomial",                           # exact two-sided binomial test of accuracy vs 0.5
         "power_65", "verdict", "mean_seconds",
         "by_model": {model: SUB}, "by_size_bin": {bin: SUB},
         "lesion_present": {"n", "accuracy", "sensitivity", "specificity"} | None}
SUB = {"n", "n_correct", "accuracy", "accuracy_ci", "sensitivity", "specificity", "auc", "auc_ci", "p_binomial"}
```

Definitions. A reader's call on a real or synthetic case is correct when it names the truth
(lesion-free cases only enter `lesion_present`). The synthetic score of an answer is
`levels + confidence` for a "synthetic" call and `levels + 1 - confidence` for "real"
(1 = sure it is real ... 2·levels = sure it is synthetic); ROC and AUC use it, and the AUC is
scikit-learn's (ties count one half). `by_model[m]` is every real case plus the synthetic cases
of model m (its sensitivity: how often m's lesions were spotted); `by_size_bin[b]` every case
of bin b. Power: of the two-sided exact binomial test at α = 0.05 against 0.5, for the number
of cases read, to detect a true accuracy of 65 %. Verdict: "indistinguishable" only when the
accuracy CI holds 0.5 AND that power is at least 0.8; "distinguishable" when the CI lies
wholly above (or below) 0.5; otherwise "inconclusive (power X %)".

Pooled readers: accuracy and its CI come from every human answer, the CI by a bootstrap over
cases (a case read by five readers is one case, not five); the binomial p treats answers as
independent (it is optimistic when readers agree); the power uses the number of distinct
cases (conservative).
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy.stats import binom, binomtest, rankdata

from lesion_studio.core.errors import ConfigError, SessionError
from lesion_studio.core.reader_study.answer_key import AnswerKey, default_key_for, load_answer_key

RESULTS_FORMAT = "lesion-studio-reader-study-results"
RESULTS_VERSION = 1
ALPHA = 0.05
#: Issue 17: "indistinguishable" needs the power to detect a true accuracy of 65 %.
TARGET_ACCURACY = 0.65
POWER_NEEDED = 0.80
N_BOOTSTRAP = 2000
#: Reader ids of automatic readers start with this (`machine-cnn`); they are not pooled.
MACHINE_PREFIX = "machine-"
CALLS = ("real", "synthetic")


@dataclass(frozen=True)
class Reading:
    """One answer joined to its case's truth."""

    reader: str
    case_id: str
    truth: str
    model: str | None
    size_bin: str | None
    call: str | None
    confidence: int | None
    lesion_present: bool | None
    seconds: float


# -- statistics (each checked against scipy / scikit-learn / statsmodels in the tests) --------
def synthetic_score(call: str, confidence: int, levels: int) -> int:
    """1 (sure it is real) .. 2·levels (sure it is synthetic)."""
    return levels + int(confidence) if call == "synthetic" else levels + 1 - int(confidence)


def roc_auc(labels: Sequence[int], scores: Sequence[float]) -> float | None:
    """Area under the ROC curve (Mann-Whitney, ties one half); None without both classes."""
    y = np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(np.asarray(scores, dtype=np.float64))
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_curve(labels: Sequence[int], scores: Sequence[float]) -> dict[str, list[float]]:
    """ROC points from (0, 0) to (1, 1), one per distinct score (called positive at score >= t)."""
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    fpr, tpr, thresholds = [0.0], [0.0], [math.inf]
    for t in sorted(set(s.tolist()), reverse=True):
        called = s >= t
        tpr.append(float((called & y).sum() / n_pos))
        fpr.append(float((called & ~y).sum() / n_neg))
        thresholds.append(float(t))
    return {"fpr": fpr, "tpr": tpr, "thresholds": thresholds}


def bootstrap_auc_ci(labels: Sequence[int], scores: Sequence[float], clusters: Sequence[str],
                     rng: np.random.Generator, n_boot: int = N_BOOTSTRAP) -> list[float] | None:
    """95 % percentile CI of the AUC, resampling clusters (cases) with replacement.

    Vectorized: each resample is a vector of cluster weights, and the AUC follows from the
    weighted counts of positives and negatives at each distinct score (ties one half).
    """
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    uniq, inverse = np.unique(np.asarray(clusters), return_inverse=True)
    if len(uniq) < 2 or y.all() or not y.any():
        return None
    _, level = np.unique(s, return_inverse=True)
    n_levels = int(level.max()) + 1
    pos = np.zeros((len(uniq), n_levels))
    neg = np.zeros((len(uniq), n_levels))
    np.add.at(pos, (inverse[y], level[y]), 1.0)
    np.add.at(neg, (inverse[~y], level[~y]), 1.0)
    picks = rng.integers(0, len(uniq), size=(n_boot, len(uniq)))
    weights = np.zeros((n_boot, len(uniq)))
    np.add.at(weights, (np.repeat(np.arange(n_boot), len(uniq)), picks.ravel()), 1.0)
    p, q = weights @ pos, weights @ neg  # (n_boot, levels)
    below = np.cumsum(q, axis=1) - q  # negatives with a lower score
    n_p, n_q = p.sum(1), q.sum(1)
    ok = (n_p > 0) & (n_q > 0)
    if ok.sum() < n_boot // 2:
        return None
    auc = (p * (below + 0.5 * q)).sum(1)[ok] / (n_p[ok] * n_q[ok])
    lo, hi = np.percentile(auc, [2.5, 97.5])
    return [float(lo), float(hi)]


def clopper_pearson(k: int, n: int) -> list[float]:
    """Exact 95 % CI of a proportion k/n (scipy's binomtest, method "exact")."""
    ci = binomtest(int(k), int(n), 0.5).proportion_ci(0.95, method="exact")
    return [float(ci.low), float(ci.high)]


def binomial_p(k: int, n: int) -> float:
    """Two-sided exact binomial test of k successes in n against 0.5."""
    return float(binomtest(int(k), int(n), 0.5).pvalue)


def binomial_power(n: int, true_accuracy: float = TARGET_ACCURACY, alpha: float = ALPHA) -> float:
    """Power of the two-sided exact binomial test (vs 0.5, level `alpha`) with `n` cases to
    detect `true_accuracy`: the chance, under that accuracy, of a count the test rejects."""
    if n <= 0:
        return 0.0
    k = np.arange(n + 1)
    p_values = np.array([binomial_p(int(i), n) for i in k])
    return float(binom.pmf(k[p_values <= alpha], n, true_accuracy).sum())


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Cohen's κ of two raters' labels on the same items (None when undefined)."""
    if len(a) != len(b) or not a:
        return None
    cats = sorted(set(a) | set(b))
    n = len(a)
    p_o = sum(x == y for x, y in zip(a, b)) / n
    ca, cb = Counter(a), Counter(b)
    p_e = sum(ca[c] * cb[c] for c in cats) / (n * n)
    if p_e >= 1.0:
        return 1.0 if p_o >= 1.0 else None
    return float((p_o - p_e) / (1.0 - p_e))


def fleiss_kappa(table: np.ndarray) -> float | None:
    """Fleiss' κ of an `(items, categories)` count table with the same number of raters per item."""
    t = np.asarray(table, dtype=np.float64)
    if t.ndim != 2 or t.shape[0] == 0:
        return None
    m = t.sum(1)
    if not np.all(m == m[0]) or m[0] < 2:
        return None
    r = m[0]
    p_item = ((t * t).sum(1) - r) / (r * (r - 1))
    p_cat = t.sum(0) / t.sum()
    p_bar, p_e = float(p_item.mean()), float((p_cat**2).sum())
    if p_e >= 1.0:
        return 1.0 if p_bar >= 1.0 else None
    return float((p_bar - p_e) / (1.0 - p_e))


def verdict(accuracy_ci: Sequence[float] | None, power: float | None) -> str:
    """The issue-17 rule (see the module docstring)."""
    if accuracy_ci is None or power is None:
        return "no answers"
    lo, hi = accuracy_ci
    if lo > 0.5 or hi < 0.5:
        return "distinguishable"
    if power >= POWER_NEEDED:
        return "indistinguishable"
    return f"inconclusive (power {power:.0%})"


# -- summaries ---------------------------------------------------------------------------------
def _rate(num: int, den: int) -> float | None:
    return None if den == 0 else num / den


def _core(readings: list[Reading], levels: int, rng: np.random.Generator, n_boot: int,
          clustered: bool) -> dict[str, Any]:
    """Accuracy, sensitivity/specificity, AUC (+ CI) and binomial test of real/synthetic calls."""
    rs = [r for r in readings if r.truth in CALLS and r.call in CALLS]
    n = len(rs)
    y = np.array([r.truth == "synthetic" for r in rs], dtype=bool)
    called = np.array([r.call == "synthetic" for r in rs], dtype=bool)
    correct = int(np.sum(y == called))
    cases = [r.case_id for r in rs]
    out: dict[str, Any] = {"n": n, "n_cases": len(set(cases)), "n_correct": correct, "accuracy": _rate(correct, n),
                           "accuracy_ci": None, "accuracy_ci_method": None,
                           "sensitivity": _rate(int(np.sum(y & called)), int(y.sum())),
                           "specificity": _rate(int(np.sum(~y & ~called)), int((~y).sum())),
                           "auc": None, "auc_ci": None, "p_binomial": None}
    if n == 0:
        return out
    if clustered and out["n_cases"] < n:
        out["accuracy_ci"] = _bootstrap_accuracy_ci(y == called, cases, rng, n_boot)
        out["accuracy_ci_method"] = "bootstrap over cases"
    else:
        out["accuracy_ci"] = clopper_pearson(correct, n)
        out["accuracy_ci_method"] = "Clopper-Pearson"
    out["p_binomial"] = binomial_p(correct, n)
    scores = [synthetic_score(r.call, r.confidence or 1, levels) for r in rs]
    out["auc"] = roc_auc(y, scores)
    if out["auc"] is not None:
        out["auc_ci"] = bootstrap_auc_ci(y, scores, cases, rng, n_boot)
    return out


def _bootstrap_accuracy_ci(hits: np.ndarray, cases: list[str], rng: np.random.Generator,
                           n_boot: int) -> list[float]:
    per_case: dict[str, list[bool]] = defaultdict(list)
    for hit, case in zip(hits.tolist(), cases):
        per_case[case].append(hit)
    right = np.array([sum(v) for v in per_case.values()], dtype=np.float64)
    total = np.array([len(v) for v in per_case.values()], dtype=np.float64)
    pick = rng.integers(0, len(right), size=(n_boot, len(right)))
    acc = right[pick].sum(1) / total[pick].sum(1)
    lo, hi = np.percentile(acc, [2.5, 97.5])
    return [float(lo), float(hi)]


def summarize(readings: list[Reading], levels: int, rng: np.random.Generator, *, n_boot: int = N_BOOTSTRAP,
              kind: str = "human", reader: str = "", pooled: bool = False) -> dict[str, Any]:
    """The STATS dict of one reader (or of pooled readers) — see the module docstring."""
    out = _core(readings, levels, rng, n_boot, clustered=pooled)
    rs = [r for r in readings if r.truth in CALLS and r.call in CALLS]
    y = [r.truth == "synthetic" for r in rs]
    scores = [synthetic_score(r.call, r.confidence or 1, levels) for r in rs]
    out["roc"] = roc_curve(y, scores) if rs else {"fpr": [], "tpr": [], "thresholds": []}
    out["confusion"] = {t: {c: sum(1 for r in rs if r.truth == t and r.call == c) for c in CALLS} for t in CALLS}
    n_power = out["n_cases"] if pooled else out["n"]
    out["power_65"] = binomial_power(n_power) if n_power else None
    out["verdict"] = verdict(out["accuracy_ci"], out["power_65"])
    out["mean_seconds"] = float(np.mean([r.seconds for r in readings])) if readings else None
    out["reader"], out["kind"] = reader, kind
    out["n_readers"] = len({r.reader for r in readings})
    out["n_answered"] = len(readings)
    models = sorted({r.model for r in rs if r.truth == "synthetic" and r.model})
    out["by_model"] = {m: _core([r for r in rs if r.truth == "real" or r.model == m], levels, rng, n_boot, pooled)
                       for m in models}
    bins = sorted({r.size_bin for r in rs if r.size_bin}, key=_bin_order)
    out["by_size_bin"] = {b: _core([r for r in rs if r.size_bin == b], levels, rng, n_boot, pooled) for b in bins}
    present = [r for r in readings if r.lesion_present is not None]
    if present:
        truth = np.array([r.truth != "lesion-free" for r in present])
        said = np.array([bool(r.lesion_present) for r in present])
        out["lesion_present"] = {"n": len(present), "accuracy": float(np.mean(truth == said)),
                                 "sensitivity": _rate(int(np.sum(truth & said)), int(truth.sum())),
                                 "specificity": _rate(int(np.sum(~truth & ~said)), int((~truth).sum()))}
    else:
        out["lesion_present"] = None
    return out


def _bin_order(label: str) -> float:
    text = label.lstrip(">=").split("-")[0].split(" ")[0]
    try:
        return float(text)
    except ValueError:
        return math.inf


def kappas(readings: list[Reading]) -> dict[str, Any]:
    """Cohen's κ for every pair of readers (cases both called) and Fleiss' κ of the human
    readers over the cases every one of them called."""
    calls: dict[str, dict[str, str]] = defaultdict(dict)
    for r in readings:
        if r.truth in CALLS and r.call in CALLS:
            calls[r.reader][r.case_id] = r.call
    readers = sorted(calls)
    cohen = []
    for a, b in combinations(readers, 2):
        common = sorted(set(calls[a]) & set(calls[b]))
        cohen.append({"readers": [a, b], "n": len(common),
                      "kappa": cohen_kappa([calls[a][c] for c in common], [calls[b][c] for c in common])})
    humans = [r for r in readers if not r.startswith(MACHINE_PREFIX)]
    fleiss = None
    if len(humans) >= 2:
        common = sorted(set.intersection(*(set(calls[h]) for h in humans)))
        table = np.array([[sum(calls[h][c] == k for h in humans) for k in CALLS] for c in common])
        fleiss = {"readers": humans, "n": len(common), "kappa": fleiss_kappa(table) if common else None}
    return {"cohen": cohen, "fleiss": fleiss}


# -- loading -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class StudyAnswers:
    """A study, its key, every answer joined to its truth, and which readers have finished."""

    study: Any  # session.Study
    key: AnswerKey
    readings: list[Reading]
    finished: dict[str, bool]
    warnings: list[str]


def load_answers(study_dir: str | Path, key_path: str | Path | None = None) -> StudyAnswers:
    """Every session of the study (`sessions/*.json`) joined to the answer key (default:
    `<study_dir>.key.json`). A session that cannot be read is skipped with a warning."""
    from lesion_studio.core.reader_study.session import ReaderSession, load_study

    study = load_study(study_dir)
    key = load_answer_key(key_path if key_path is not None else default_key_for(study.folder), study.study_id)
    missing = [c.id for c in study.cases if c.id not in key.cases]
    if missing:
        raise ConfigError(f"the answer key has no entry for {len(missing)} case(s) of the study "
                          f"(first: {missing[0]})", key.path)
    readings: list[Reading] = []
    finished: dict[str, bool] = {}
    warnings: list[str] = []
    for reader in study.session_readers():
        try:
            session = ReaderSession.load(study, reader)
        except SessionError as exc:
            warnings.append(f"session {reader!r} skipped: {exc}")
            continue
        finished[reader] = session.finished
        if not session.finished:
            warnings.append(f"{reader} has answered {session.n_answered} of {study.n_cases} cases so far")
        for a in session.answers:
            k = key.cases[a.case_id]
            readings.append(Reading(reader, a.case_id, k.truth, k.model, k.size_bin, a.call, a.confidence,
                                    a.lesion_present, float(a.seconds)))
    return StudyAnswers(study, key, readings, finished, warnings)


def analyze_study(study_dir: str | Path, key_path: str | Path | None = None, *, seed: int = 0,
                  n_bootstrap: int = N_BOOTSTRAP) -> dict[str, Any]:
    """Every statistic of the study's sessions (see the module docstring); seeded bootstrap."""
    answers = load_answers(study_dir, key_path)
    study, key, readings = answers.study, answers.key, answers.readings
    warnings = list(answers.warnings)
    levels = study.confidence_levels
    rng = np.random.default_rng(seed)
    by_reader: dict[str, list[Reading]] = defaultdict(list)
    for r in readings:
        by_reader[r.reader].append(r)
    readers = {}
    for reader in sorted(by_reader):
        kind = "machine" if reader.startswith(MACHINE_PREFIX) else "human"
        stats = summarize(by_reader[reader], levels, rng, n_boot=n_bootstrap, kind=kind, reader=reader)
        stats["finished"] = answers.finished.get(reader, False)
        readers[reader] = stats
    human_ids = sorted({r.reader for r in readings if not r.reader.startswith(MACHINE_PREFIX)})
    pooled = None
    if human_ids:
        humans = [r for r in readings if r.reader in human_ids]
        pooled = summarize(humans, levels, rng, n_boot=n_bootstrap, kind="pooled", reader="all human readers",
                           pooled=len(human_ids) > 1)
        pooled["finished"] = all(readers[h]["finished"] for h in human_ids)
    headline = pooled if pooled is not None else (next(iter(readers.values())) if len(readers) == 1 else None)
    if not readings:
        warnings.append("no reader has answered yet (no sessions in sessions/)")
    counts = Counter(k.truth for cid, k in key.cases.items())
    return {
        "format": RESULTS_FORMAT, "version": RESULTS_VERSION, "study_id": study.study_id, "name": study.name,
        "n_cases": {t: counts.get(t, 0) for t in ("real", "synthetic", "lesion-free")},
        "confidence_levels": levels, "alpha": ALPHA, "target_accuracy": TARGET_ACCURACY,
        "power_needed": POWER_NEEDED, "n_bootstrap": n_bootstrap, "seed": seed,
        "readers": readers, "pooled": pooled, "kappa": kappas(readings),
        "power_65": None if headline is None else headline["power_65"],
        "verdict": "no answers" if headline is None else headline["verdict"],
        "warnings": warnings + list(key.design.get("shortfalls", [])),
    }


# -- output ------------------------------------------------------------------------------------
CSV_COLUMNS = ("reader", "kind", "breakdown", "group", "n", "n_correct", "accuracy", "accuracy_ci_low",
               "accuracy_ci_high", "sensitivity", "specificity", "auc", "auc_ci_low", "auc_ci_high", "p_binomial",
               "power_65", "verdict", "mean_seconds")


def csv_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per reader (and pooled) × breakdown (all, each model, each size bin)."""
    rows = []
    entries = list(results["readers"].values()) + ([results["pooled"]] if results.get("pooled") else [])
    for stats in entries:
        parts = [("all", "", stats)] + [("model", m, s) for m, s in stats["by_model"].items()] + \
                [("size_bin", b, s) for b, s in stats["by_size_bin"].items()]
        for breakdown, group, s in parts:
            ci, auc_ci = s.get("accuracy_ci") or [None, None], s.get("auc_ci") or [None, None]
            rows.append({"reader": stats["reader"], "kind": stats["kind"], "breakdown": breakdown, "group": group,
                         "n": s["n"], "n_correct": s["n_correct"], "accuracy": s["accuracy"],
                         "accuracy_ci_low": ci[0], "accuracy_ci_high": ci[1], "sensitivity": s["sensitivity"],
                         "specificity": s["specificity"], "auc": s["auc"], "auc_ci_low": auc_ci[0],
                         "auc_ci_high": auc_ci[1], "p_binomial": s["p_binomial"],
                         "power_65": stats["power_65"] if breakdown == "all" else None,
                         "verdict": stats["verdict"] if breakdown == "all" else "",
                         "mean_seconds": stats["mean_seconds"] if breakdown == "all" else None})
    return rows


def results_csv(results: dict[str, Any]) -> str:
    """`csv_rows` as CSV text (numbers to 4 decimals, empty for undefined)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in csv_rows(results):
        writer.writerow({k: ("" if v is None else round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})
    return buf.getvalue()


def write_results(results: dict[str, Any], out_dir: str | Path, *, figures: bool = True) -> list[Path]:
    """Write results.json, results.csv and (matplotlib installed) the figures; returns the paths."""
    from lesion_studio.core.export.atomic import write_bytes, write_json

    out = Path(out_dir)
    paths = [write_json(out / "results.json", results),
             write_bytes(out / "results.csv", results_csv(results).encode("utf-8"))]
    if figures:
        from lesion_studio.core.reader_study.figures import write_figures

        paths += write_figures(results, out)
    return paths
