"""The post's Batch and getWindowBatch on a hand-worked 15-character text, like the PTB tutorial's reader_test."""
import numpy as np
import pytest

import data
from batches import Batch, check_size, getWindowBatch

TEXT = "abcdefghijklmno"  # 15 characters: 3 cursors start at 0, 5 and 10


def strings(ids):
    """The characters of a window [num_unrollings, batch_size], one string per cursor."""
    return ["".join(data.id2char(i) for i in column) for column in np.asarray(ids).T]


def test_cursors_start_evenly_spread():
    assert Batch(data.text_to_ids(TEXT), 3).cursors.tolist() == [0, 5, 10]
    assert Batch(data.text_to_ids(TEXT), 4).cursors.tolist() == [0, 3, 6, 9]  # segment 15 // 4 = 3


def test_exact_windows_cursors_and_wrap_around():
    b = Batch(data.text_to_ids(TEXT), 3)
    expected = [  # (inputs, labels, cursors after the call)
        (["ab", "fg", "kl"], ["bc", "gh", "lm"], [2, 7, 12]),
        (["cd", "hi", "mn"], ["de", "ij", "no"], [4, 9, 14]),
        (["ef", "jk", "oa"], ["fg", "kl", "ab"], [6, 11, 1]),  # the third cursor wraps around the end
        (["gh", "lm", "bc"], ["hi", "mn", "cd"], [8, 13, 3]),
    ]
    for inputs, labels, cursors in expected:
        batch_x, batch_y = getWindowBatch(b, 2)
        assert batch_x.shape == batch_y.shape == (2, 3) and batch_x.dtype == np.uint8
        assert (strings(batch_x), strings(batch_y), b.cursors.tolist()) == (inputs, labels, cursors)


def test_labels_are_the_inputs_shifted_by_one_and_windows_continue():
    ids = data.text_to_ids("the quick brown fox jumps over the lazy dog")  # 43 characters, 3 cursors 14 apart
    b = Batch(ids, 3)
    for k in range(20):  # wraps around the text more than once
        batch_x, batch_y = getWindowBatch(b, 4)
        expected_x = [[ids[(s * 14 + 4 * k + t) % 43] for s in range(3)] for t in range(4)]
        expected_y = [[ids[(s * 14 + 4 * k + t + 1) % 43] for s in range(3)] for t in range(4)]
        assert (batch_x.tolist(), batch_y.tolist()) == (expected_x, expected_y), k


def test_mega_batches_are_the_one_hot_windows():
    b = Batch(data.text_to_ids(TEXT), 3)
    batch_x, batch_y = getWindowBatch(b, 2)
    mega_batch_x, mega_batch_y = list(data.one_hot(batch_x)), list(data.one_hot(batch_y))
    assert len(mega_batch_x) == 2 and all(a.shape == (3, 27) and a.dtype == np.float32 for a in mega_batch_x)
    expected = np.zeros((3, 3, 27), np.float32)  # a, b, c at cursor 0; f, g, h at 5; k, l, m at 10
    for t in range(3):
        for s, start in enumerate([0, 5, 10]):
            expected[t, s, 1 + start + t] = 1.0  # 'a' is id 1
    np.testing.assert_array_equal(np.stack(mega_batch_x), expected[:2])
    np.testing.assert_array_equal(np.stack(mega_batch_y), expected[1:])
    assert data.batches2string(mega_batch_x) == ["ab", "fg", "kl"]


def test_invalid_sizes():
    ids = data.text_to_ids(TEXT)
    with pytest.raises(ValueError, match="batch_size must lie in 1..15"):
        Batch(ids, 0)
    with pytest.raises(ValueError, match="batch_size must lie in 1..15"):
        Batch(ids, 16)
    with pytest.raises(ValueError, match="ids must lie in 0..26"):
        Batch(np.array([1, 27]), 1)
    with pytest.raises(data.DataError, match=r"train split has 15 characters.*4 x \(num_unrollings 3 \+ 1\) = 16"):
        check_size(ids, 4, 3, name="train")
    check_size(ids, 3, 4)  # 3 x 5 = 15 fits
