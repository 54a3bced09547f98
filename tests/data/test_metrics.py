"""Metric functions against values worked out by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import math

import pytest

from flurka.data import metrics


def test_accuracy():
    assert metrics.accuracy([1, 0, 1, 1], [1, 1, 1, 0]) == 0.5


def test_f1_of_the_positive_class():
    # pred 1 1 0 1 0 / gold 1 0 0 1 1: TP=2 FP=1 FN=1 -> 2*2 / (2*2 + 1 + 1) = 2/3
    assert metrics.f1_score([1, 1, 0, 1, 0], [1, 0, 0, 1, 1]) == pytest.approx(2 / 3)
    assert metrics.f1_score([0, 0], [0, 0]) == 0.0  # no positives anywhere: defined as 0, as GLUE's code does


def test_matthews_correlation():
    # TP=2 FP=1 FN=1 TN=2 -> (2*2 - 1*1) / sqrt(3*3*3*3) = 3/9
    assert metrics.matthews_corrcoef([1, 1, 0, 1, 0, 0], [1, 0, 0, 1, 1, 0]) == pytest.approx(1 / 3)
    assert metrics.matthews_corrcoef([1, 1, 1], [1, 0, 1]) == 0.0  # a constant prediction: undefined -> 0
    assert metrics.matthews_corrcoef([0, 1, 0], [1, 0, 1]) == pytest.approx(-1.0)


def test_pearson():
    # x - mean = (-1, 0, 1); y - mean = (-7/3, -1/3, 8/3); r = 5 / sqrt(2 * 114/9)
    assert metrics.pearson([1, 2, 3], [2, 4, 7]) == pytest.approx(5 / math.sqrt(2 * 114 / 9))


def test_spearman_averages_tied_ranks():
    # ranks x = (1, 2.5, 2.5, 4), y = (1, 3, 2, 4): r = 4.5 / sqrt(4.5 * 5)
    assert metrics.spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(4.5 / math.sqrt(4.5 * 5))
    assert metrics.spearman([1, 2, 3, 4], [1, 8, 27, 64]) == pytest.approx(1.0)  # monotone, not linear


def test_bits_and_perplexity():
    assert metrics.bits_per_unit(math.log(2)) == pytest.approx(1.0)
    assert metrics.bits_per_unit(3 * math.log(2)) == pytest.approx(3.0)
    assert metrics.perplexity(math.log(10)) == pytest.approx(10.0)


def test_bleu_with_sacrebleu_on_a_known_pair():
    ref = "the cat sat on the mat"
    assert metrics.bleu([ref], [ref]) == pytest.approx(100.0)
    # "the cat is on the mat": n-gram precisions 5/6, 3/5, 1/4 and 0/3; sacrebleu's default 'exp' smoothing
    # turns the zero into 1/(2*3). Same length, so no brevity penalty: 100 * (5/6 * 3/5 * 1/4 * 1/6) ** (1/4).
    assert metrics.bleu(["the cat is on the mat"], [ref]) == pytest.approx(100 * (1 / 48) ** 0.25, abs=1e-6)


def test_metrics_refuse_mismatched_inputs():
    with pytest.raises(ValueError, match="equal length"):
        metrics.accuracy([1, 0], [1])
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        metrics.bleu(["a", "b"], ["a"])
