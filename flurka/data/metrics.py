"""The papers' metrics, in numpy: accuracy, Matthews correlation, F1, Pearson, Spearman, BLEU (sacrebleu),
bits per character / dimension and perplexity.

Written out rather than imported from scikit-learn/scipy so the definitions are visible and tested against
hand-computed values (tests/data/test_metrics.py); the GLUE conventions follow the GLUE reference code
(F1 of the positive class 1, Matthews over binary labels, Pearson/Spearman on raw predictions).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def _pair(pred: Sequence | np.ndarray, gold: Sequence | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, g = np.asarray(pred), np.asarray(gold)
    if p.shape != g.shape or p.ndim != 1:
        raise ValueError(f"predictions {p.shape} and labels {g.shape} must be 1-d of equal length")
    if len(p) == 0:
        raise ValueError("metrics need at least one example")
    return p, g


def accuracy(pred: Sequence | np.ndarray, gold: Sequence | np.ndarray) -> float:
    p, g = _pair(pred, gold)
    return float((p == g).mean())


def f1_score(pred: Sequence | np.ndarray, gold: Sequence | np.ndarray, positive: int = 1) -> float:
    """F1 of the positive class (MRPC/QQP report F1 of label 1 = paraphrase/duplicate). 0 when undefined."""
    p, g = _pair(pred, gold)
    tp = float(((p == positive) & (g == positive)).sum())
    fp = float(((p == positive) & (g != positive)).sum())
    fn = float(((p != positive) & (g == positive)).sum())
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def matthews_corrcoef(pred: Sequence | np.ndarray, gold: Sequence | np.ndarray) -> float:
    """Binary Matthews correlation (CoLA): (TP·TN − FP·FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)); 0 if undefined."""
    p, g = _pair(pred, gold)
    p, g = p.astype(bool), g.astype(bool)
    tp, tn = float((p & g).sum()), float((~p & ~g).sum())
    fp, fn = float((p & ~g).sum()), float((~p & g).sum())
    denom = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return 0.0 if denom == 0 else (tp * tn - fp * fn) / denom


def pearson(x: Sequence | np.ndarray, y: Sequence | np.ndarray) -> float:
    a, b = _pair(x, y)
    a, b = a.astype(np.float64) - np.mean(a), b.astype(np.float64) - np.mean(b)
    denom = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return 0.0 if denom == 0 else float((a * b).sum() / denom)


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties sharing their mean rank (what Spearman's rho needs)."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), dtype=np.float64)
    sorted_x = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sorted_x[j + 1] == sorted_x[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(x: Sequence | np.ndarray, y: Sequence | np.ndarray) -> float:
    a, b = _pair(x, y)
    return pearson(_average_ranks(a.astype(np.float64)), _average_ranks(b.astype(np.float64)))


def bits_per_unit(mean_nats: float) -> float:
    """Mean NLL in nats per character/byte/pixel -> bits (bits per character, bits per dimension)."""
    return mean_nats / math.log(2)


def perplexity(mean_nats: float) -> float:
    return math.exp(min(mean_nats, 50.0))  # capped: an untrained model's exp(loss) overflows nothing useful


def require_sacrebleu():
    """sacrebleu, or an ImportError that says how to get it. Translation tasks call this when they are built, so a
    run without it stops before training, not at its first BLEU evaluation minutes later."""
    try:
        import sacrebleu
    except ImportError as err:
        raise ImportError(
            "BLEU needs sacrebleu, which is not installed: `pip install sacrebleu` (it is in environment.yml; for "
            "the device tool, `make device-stage` carries its wheels)"
        ) from err
    return sacrebleu


def bleu(hypotheses: Sequence[str], references: Sequence[str], *, tokenize: str = "13a") -> float:
    """Corpus BLEU of detokenised hypotheses against one reference each (sacrebleu, WMT's standard '13a')."""
    sacrebleu = require_sacrebleu()
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)], tokenize=tokenize).score)
