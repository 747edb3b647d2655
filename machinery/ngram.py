"""A character n-gram yardstick: interpolated Kneser-Ney with one absolute discount per order.

Every results table answers "is this good?" against it: a vanilla RNN should beat a 5-gram. The model is
trained on a corpus's training split and scores the same validation and test splits as the RNN runs, each
character predicted from the ones before it in the split (the first from none: len(split) - 1 predictions,
as the RNN's evaluator makes).

The probability of character w after the context h (its last N - 1 characters, fewer at the start of a
split), with c(.) the counts of the training text at the top order and, at every lower order, the
continuation counts N1+(. g) (how many different characters precede g), as Kneser and Ney proposed:

    p_k(w | h) = (max(c(h w) - D_k, 0) + D_k * T(h) * p_(k-1)(w | h')) / c(h)     if c(h) > 0
               = p_(k-1)(w | h')                                                  if h was never seen

where c(h) sums c(h w) over w, T(h) counts the w with c(h w) > 0, h' is h without its first character, and
p_0 is uniform over the 27 characters. D_k = n1 / (n1 + 2 n2), from the numbers of k-grams counted exactly
once and twice (Ney, Essen and Kneser 1994); 0.5 when no k-gram is counted once. Counting is numpy sorting of base-27 codes: text8's 90 million
training characters at order 6 take minutes, not hours.
"""
import math

import numpy as np

import data

BASE = data.alphabet_size  # 27
MAX_ORDER = 12  # 27**12 < 2**63: codes of up to 12 characters fit in an int64


def codes(ids, k):
    """The base-27 code of the k characters ending at each position i >= k - 1 of ids (position i's k-gram is
    ids[i-k+1 .. i]); an int64 array of len(ids) - k + 1."""
    ids = np.asarray(ids, dtype=np.int64)
    out = np.zeros(len(ids) - k + 1, dtype=np.int64)
    for j in range(k):
        out = out * BASE + ids[j:len(ids) - k + 1 + j]
    return out


class _Counts:
    """The statistics of one order k: its k-grams (sorted codes) with their counts, and per context (the
    first k - 1 characters) the sum of those counts and how many k-grams have a non-zero count."""

    def __init__(self, grams, counts):
        keep = counts > 0
        self.grams, self.counts = grams[keep], counts[keep]
        self.contexts, first = np.unique(self.grams // BASE, return_index=True)
        self.context_sums = np.add.reduceat(self.counts, first) if len(first) else np.zeros(0, np.int64)
        self.context_types = np.diff(np.append(first, len(self.grams)))
        n1, n2 = np.sum(self.counts == 1), np.sum(self.counts == 2)
        self.discount = float(n1 / (n1 + 2 * n2)) if n1 > 0 else 0.5  # no singletons: any discount in (0, 1]

    @staticmethod
    def _find(table, keys, values):
        """values[table == key] for each key, 0 where the key is not in the sorted table."""
        if len(table) == 0:
            return np.zeros(len(keys), dtype=np.float64)
        where = np.minimum(np.searchsorted(table, keys), len(table) - 1)
        return np.where(table[where] == keys, values[where], 0).astype(np.float64)

    def probabilities(self, gram_codes, lower):
        """p_k of each k-gram code (context and character) given the lower order's probabilities."""
        count = self._find(self.grams, gram_codes, self.counts)
        context = gram_codes // BASE
        total = self._find(self.contexts, context, self.context_sums)
        types = self._find(self.contexts, context, self.context_types)
        d = self.discount
        with np.errstate(divide="ignore", invalid="ignore"):
            p = (np.maximum(count - d, 0.0) + d * types * lower) / total
        return np.where(total > 0, p, lower)


class KneserNey:
    """An interpolated Kneser-Ney character model of order N (1 to MAX_ORDER), trained on ids."""

    def __init__(self, ids, order):
        if not 1 <= order <= MAX_ORDER:
            raise ValueError(f"order {order}: it must be from 1 to {MAX_ORDER}")
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) < order:
            raise data.DataError(f"the training text has {len(ids):,} characters, too few for a {order}-gram")
        self.order = order
        self.raw, self.continuation = {}, {}  # order k -> _Counts
        grams = None
        for k in range(order, 0, -1):  # from the top: each order's continuation counts come from the one above
            grams, counts = np.unique(codes(ids, k), return_counts=True)
            self.raw[k] = _Counts(grams, counts)
            if k < order:  # N1+(. g): distinct characters before g = distinct (k+1)-grams ending in g
                suffixes, left = np.unique(self.raw[k + 1].grams % BASE ** k, return_counts=True)
                self.continuation[k] = _Counts(suffixes, left)

    def log2_probabilities(self, ids):
        """log2 p(ids[i] | the up to N - 1 characters before it in ids) for i = 1 .. len(ids) - 1."""
        ids = np.asarray(ids, dtype=np.int64)
        n = len(ids)
        if n < 2:
            return np.zeros(0)
        padded = np.concatenate([np.zeros(self.order - 1, np.int64), ids])  # codes exist at every position
        available = np.minimum(np.arange(n), self.order - 1)  # context characters each position has
        lower = np.full(n, 1.0 / BASE)  # p_0: uniform
        result = np.zeros(n)
        for k in range(1, self.order + 1):
            gram_codes = codes(padded, k)[self.order - k:]  # the k-gram ending at each position of ids
            top = self.raw[k].probabilities(gram_codes, lower)  # order k as the top order (raw counts)
            result = np.where(available == k - 1, top, result)  # where the context holds exactly k - 1 characters
            if k < self.order:
                lower = self.continuation[k].probabilities(gram_codes, lower)
        return np.log2(result[1:])

    def bpc(self, ids):
        """Bits per character of a text: the mean of -log2 p over its len(ids) - 1 predictions."""
        logs = self.log2_probabilities(ids)
        return float(-logs.mean()) if len(logs) else math.nan
