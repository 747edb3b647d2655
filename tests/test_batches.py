"""The cursor batch generator on a hand-worked 15-character text, like the PTB tutorial's reader_test."""
import numpy as np
import pytest

import batches
import data
from batches import BatchGenerator

TEXT = "abcdefghijklmno"  # 15 characters: 3 cursors start at 0, 5 and 10


def strings(megabatch):
    return data.batches2string(megabatch)


def test_exact_megabatches_with_wrap_around():
    gen = BatchGenerator(data.text_to_ids(TEXT), batch_size=3, num_unrollings=2)
    first = gen.next()
    assert len(first) == 3 and all(a.shape == (3, 27) and a.dtype == np.float32 for a in first)
    assert strings(first) == ["abc", "fgh", "klm"]
    assert strings(gen.next()) == ["cde", "hij", "mno"]
    assert strings(gen.next()) == ["efg", "jkl", "oab"]  # the third cursor wraps around the end
    assert strings(gen.next()) == ["ghi", "lmn", "bcd"]


def test_first_array_is_last_of_previous_call_and_labels_are_inputs_shifted():
    gen = BatchGenerator(data.text_to_ids(TEXT), batch_size=3, num_unrollings=4)
    prev = gen.next()
    for _ in range(5):
        cur = gen.next()
        assert np.array_equal(cur[0], prev[-1])
        inputs, labels = cur[:-1], cur[1:]
        for t in range(len(inputs) - 1):
            assert np.array_equal(labels[t], inputs[t + 1])
        prev = cur


def test_exact_arrays_one_hot():
    gen = BatchGenerator(data.text_to_ids(TEXT), batch_size=3, num_unrollings=2)
    expected = np.zeros((3, 3, 27), np.float32)
    for t in range(3):
        for b, start in enumerate([0, 5, 10]):
            expected[t, b, 1 + start + t] = 1.0  # 'a' is id 1
    assert np.array_equal(np.stack(gen.next()), expected)


def test_position_save_and_restore():
    ids = data.text_to_ids(TEXT)
    gen = BatchGenerator(ids, 3, 2)
    gen.next(), gen.next()
    saved = gen.position()
    assert saved == [4, 9, 14]
    expected = [strings(gen.next()) for _ in range(3)]
    other = BatchGenerator(ids, 3, 2)
    other.restore(saved)
    assert [strings(other.next()) for _ in range(3)] == expected
    with pytest.raises(data.DataError, match="position"):
        other.restore([0, 1])
    with pytest.raises(data.DataError, match="position"):
        other.restore([0, 1, 15])


def test_ids_over_several_chunks_follow_the_cursors(monkeypatch):
    monkeypatch.setattr(batches, "CHUNK_BYTES", 100)  # 100 // (4 + 1) // 3 = 6 mega-batches per chunk
    ids = data.text_to_ids("the quick brown fox jumps over the lazy dog")  # 43 characters, 3 cursors 14 apart
    gen = BatchGenerator(ids, batch_size=3, num_unrollings=4)
    for k in range(20):  # wraps around the text more than once
        expected = [[ids[(b * 14 + 4 * k + t) % 43] for b in range(3)] for t in range(5)]
        assert gen.next_ids().tolist() == expected, k


def test_restore_in_the_middle_of_a_chunk_drops_what_was_cut_ahead(monkeypatch):
    monkeypatch.setattr(batches, "CHUNK_BYTES", 100)
    gen = BatchGenerator(data.text_to_ids("the quick brown fox jumps over the lazy dog"), 3, 4)
    first = [gen.next_ids() for _ in range(2)]
    gen.next_ids()
    gen.restore([0, 14, 28])  # back to the start
    assert [a.tolist() for a in (gen.next_ids(), gen.next_ids())] == [a.tolist() for a in first]


def test_invalid_sizes():
    ids = data.text_to_ids(TEXT)
    with pytest.raises(ValueError, match="at least 1"):
        BatchGenerator(ids, 0, 2)
    with pytest.raises(ValueError, match="at least 1"):
        BatchGenerator(ids, 3, 0)
    with pytest.raises(data.DataError, match=r"train split has 15 characters.*4 x \(num_unrollings 3 \+ 1\) = 16"):
        BatchGenerator(ids, 4, 3, name="train")
