"""The Kneser-Ney yardstick: exact probabilities on a hand-worked ten-character text, and agreement with a plain
dictionary-counting implementation of the same formulas on a small text."""
import json
import math
from collections import Counter, defaultdict

import numpy as np
import pytest

import data
import evaluate
from machinery import ngram

TEXT = "aabab abab"  # a a b a b _ a b a b


def ids(text):
    return data.text_to_ids(text)


def probability(model, context, char):
    """p(char | context) from the model, as the last prediction of context + char."""
    return 2 ** model.log2_probabilities(ids(context + char))[-1]


def test_unigram_probabilities_by_hand():
    # counts: a 5, b 4, space 1 of 10; one singleton and no doubleton: D = 1 / (1 + 0) = 1;
    # 3 characters seen: p(w) = (max(c(w) - 1, 0) + 1 * 3 / 27) / 10
    model = ngram.KneserNey(ids(TEXT), 1)
    assert model.raw[1].discount == 1.0
    assert probability(model, "x", "a") == pytest.approx(37 / 90, abs=1e-12)
    assert probability(model, "x", "b") == pytest.approx(28 / 90, abs=1e-12)
    assert probability(model, "x", " ") == pytest.approx(1 / 90, abs=1e-12)
    assert probability(model, "x", "z") == pytest.approx(1 / 90, abs=1e-12)


def test_bigram_probabilities_by_hand():
    # bigrams: ab 4, ba 2, aa 1, "b " 1, " a" 1: three singletons, one doubleton, D2 = 3 / (3 + 2) = 0.6.
    # Continuation counts (distinct characters before w): a 3 (a, b, space), b 1, space 1; D1 = 2 / 2 = 1;
    # p1(a) = (3 - 1 + 3/27) / 5 = 19/45, and 1/45 for every other character.
    model = ngram.KneserNey(ids(TEXT), 2)
    assert model.raw[2].discount == pytest.approx(0.6) and model.continuation[1].discount == 1.0
    assert probability(model, "a", "b") == pytest.approx((4 - 0.6 + 0.6 * 2 / 45) / 5, abs=1e-12)
    assert probability(model, "b", "a") == pytest.approx((2 - 0.6 + 0.6 * 2 * 19 / 45) / 3, abs=1e-12)
    assert probability(model, "b", " ") == pytest.approx((1 - 0.6 + 0.6 * 2 / 45) / 3, abs=1e-12)
    assert probability(model, " ", "a") == pytest.approx(1 - 0.6 + 0.6 * 19 / 45, abs=1e-12)
    assert probability(model, "a", "z") == pytest.approx(0.6 * 2 / 45 / 5, abs=1e-12)
    assert probability(model, "z", "a") == pytest.approx(19 / 45, abs=1e-12)  # an unseen context: p1
    # a text's bits/char: the mean over its len - 1 predictions (the first character has no context)
    expected = -np.mean(np.log2([(4 - 0.6 + 0.6 * 2 / 45) / 5, (1 - 0.6 + 0.6 * 2 / 45) / 3, 0.6 / 45]))
    assert model.bpc(ids("ab z")) == pytest.approx(expected, abs=1e-12)
    # at the start of a text a higher order uses the context there is: order 3 at position 1 is order 2's top
    assert probability(ngram.KneserNey(ids(TEXT), 3), "a", "b") == pytest.approx((4 - 0.6 + 0.6 * 2 / 45) / 5)


def plain_kneser_ney(train, order):
    """The same model with dictionaries and loops, straight from the formulas, for a small text: returns
    p(w, context) for a context of up to order - 1 characters."""
    grams = {k: Counter(train[i:i + k] for i in range(len(train) - k + 1)) for k in range(1, order + 1)}
    continuation = {k: Counter(g[1:] for g in grams[k + 1]) for k in range(1, order)}

    def discount(counts):
        n1, n2 = sum(1 for c in counts.values() if c == 1), sum(1 for c in counts.values() if c == 2)
        return n1 / (n1 + 2 * n2) if n1 > 0 else 0.5

    def level(counts):
        totals, types = defaultdict(int), defaultdict(int)
        for g, c in counts.items():
            totals[g[:-1]] += c
            types[g[:-1]] += 1
        return counts, totals, types, discount(counts)

    raw = {k: level(grams[k]) for k in grams}
    cont = {k: level(continuation[k]) for k in continuation}

    def p(w, context, top=True):
        k = len(context) + 1
        lower = 1 / 27 if k == 1 else p(w, context[1:], top=False)
        counts, totals, types, d = raw[k] if top else cont[k]
        if totals[context] == 0:
            return lower
        return (max(counts[context + w] - d, 0) + d * types[context] * lower) / totals[context]
    return p


@pytest.mark.parametrize("order", [1, 2, 3, 4, 6])
def test_agrees_with_plain_counting(order):
    rng = np.random.default_rng(order)
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "ate", "it"]
    train = " ".join(rng.choice(words, size=300))
    test = " ".join(rng.choice(words + ["zebra"], size=60))
    plain, model = plain_kneser_ney(train, order), ngram.KneserNey(ids(train), order)
    expected = [math.log2(plain(test[i], test[max(0, i - order + 1):i])) for i in range(1, len(test))]
    np.testing.assert_allclose(model.log2_probabilities(ids(test)), expected, rtol=1e-10, atol=1e-12)
    # and every distribution sums to one
    for context in ("the c", "zzzz", "a m"):
        total = sum(plain(c, context[-(order - 1):] if order > 1 else "") for c in data.ALPHABET)
        assert total == pytest.approx(1.0)


def test_evaluate_ngram_scores_the_splits(tmp_path, capsys):
    rng = np.random.default_rng(0)
    corpus = tmp_path / "words.txt"
    corpus.write_text(" ".join(rng.choice(["the", "of", "and", "to", "in", "a", "is", "that"], size=3000)))
    assert evaluate.main(["--ngram", "3", "--data", str(corpus), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    train, valid, test = data.split(data.load_corpus(corpus, log=lambda s: None)[0])
    model = ngram.KneserNey(train, 3)
    assert scores["valid_bpc"] == pytest.approx(model.bpc(valid), abs=1e-4)
    assert scores["test_bpc"] == pytest.approx(model.bpc(test), abs=1e-4)
    assert scores["ngram"] == 3 and scores["train_chars"] == len(train)
    assert evaluate.main(["--ngram", "2", "--data", str(corpus)]) == 0
    line = capsys.readouterr().out
    assert "2-gram (Kneser-Ney" in line and "valid" in line and "test" in line
    with pytest.raises(SystemExit) as exit:
        evaluate.main(["--ngram", "0", "--data", str(corpus)])
    assert exit.value.code == 2 and "--ngram" in capsys.readouterr().err
