"""The alphabet helpers, text8-rule cleaning, loading --data files, and the split."""
import hashlib
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

import data
from helpers import run_child


def test_alphabet_ids_round_trip():
    assert data.ALPHABET[0] == " " and data.alphabet_size == 27
    assert [data.char2id(c) for c in " az"] == [0, 1, 26]
    assert "".join(data.id2char(i) for i in range(27)) == " abcdefghijklmnopqrstuvwxyz"
    assert data.ids_to_text(data.text_to_ids("the cat")) == "the cat"


@pytest.mark.parametrize("bad", ["A", "1", "é", "\n"])
def test_char2id_names_the_character(bad):
    with pytest.raises(ValueError, match=repr(bad).replace("\\", "\\\\")):
        data.char2id(bad)
    with pytest.raises(ValueError, match="not in the alphabet"):
        data.text_to_ids("ab" + bad)


def test_id2char_rejects_out_of_range():
    with pytest.raises(ValueError, match="27"):
        data.id2char(27)
    with pytest.raises(ValueError):
        data.id2char(-1)


def test_one_hot_of_id_and_array():
    v = data.one_hot(3)
    assert v.shape == (27,) and v.dtype == np.float32 and v[3] == 1 and v.sum() == 1
    m = data.one_hot(np.array([[0, 26], [1, 2]]))
    assert m.shape == (2, 2, 27)
    assert np.array_equal(m.argmax(-1), [[0, 26], [1, 2]]) and np.all(m.sum(-1) == 1)
    with pytest.raises(ValueError):
        data.one_hot([27])
    assert data.vec2mat(v).shape == (1, 27)


def test_sample_distribution_follows_the_distribution_and_the_generator():
    p = np.zeros(27)
    p[5] = 1.0
    assert data.sample_distribution(p) == 5
    q = np.full((1, 27), 1 / 27)
    draws = [data.sample_distribution(q, np.random.default_rng(7)) for _ in range(3)]
    assert len(set(draws)) == 1  # same generator state, same id
    rng = np.random.default_rng(0)
    counts = np.bincount([data.sample_distribution([0.25, 0.75], rng) for _ in range(4000)], minlength=2)
    assert abs(counts[1] / 4000 - 0.75) < 0.03


def test_sample_distribution_never_draws_an_impossible_id():
    rng = np.random.default_rng(5)
    p = np.array([0.0, 0.5, 0.0, 0.5, 0.0])
    assert set(data.sample_distribution(p, rng) for _ in range(2000)) == {1, 3}


def test_random_distribution_is_a_distribution():
    d = data.random_distribution(np.random.default_rng(1))
    assert d.shape == (1, 27) and np.all(d >= 0) and abs(d.sum() - 1) < 1e-12
    assert np.array_equal(d, data.random_distribution(np.random.default_rng(1)))


def test_debug_strings():
    b = [data.one_hot(data.text_to_ids(s)) for s in ["ax", "by", "cz"]]
    assert data.characters(b[0]) == ["a", "x"]
    assert data.batches2string(b) == ["abc", "xyz"]


@pytest.mark.parametrize("raw, clean", [
    ("Hello, World!", "hello world "),
    ("in 1984 we", "in one nine eight four we"),
    ("route66", "route six six "),
    ("Café naïve", "caf na ve"),
    ("tabs\tand\nnewlines\r\n", "tabs and newlines "),
    ("a   lot    of spaces", "a lot of spaces"),
    ("ÉCOLE", " cole"),
    ("日本語 text", " text"),
    ("already clean", "already clean"),
    ("!!!", " "),
])
def test_clean_text_follows_text8_rules(raw, clean):
    assert data.clean_text(raw) == clean
    assert data.is_clean(data.clean_text(raw))


def test_load_text_reports_cleaning(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("The Answer is 42.\n", encoding="utf-8")
    said = []
    assert data.load_text(p, log=said.append) == "the answer is four two "
    assert len(said) == 1 and "cleaned" in said[0] and "23 characters kept" in said[0]
    p.write_text(" already clean text", encoding="utf-8")
    said.clear()
    assert data.load_text(p, log=said.append) == " already clean text" and said == []


def test_load_text8_zip_and_other_zips(tmp_path):
    z = tmp_path / "t.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("text8", " some text eight")
        f.writestr("readme", "ignored")
    assert data.load_text(z) == " some text eight"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("only.txt", "One file")
    assert data.load_text(z, log=lambda s: None) == "one file"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("a", "x")
        f.writestr("b", "y")
    with pytest.raises(data.DataError, match="exactly one"):
        data.load_text(z)


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    (b"", "empty"),
    (b"  \n ", "empty"),
    (b"\x00\x01\x02binary", "binary"),
    (b"\xff\xfe caf\xe9", "not UTF-8"),
    ("12 + 34 = ?".encode(), None),  # digits become words: this one is fine
    ("!!! ??? ...".encode(), "no letters"),
    ("Ελληνικά".encode(), "no letters"),
])
def test_load_text_errors(tmp_path, content, message):
    p = tmp_path / "in.txt"
    if content is not None:
        p.write_bytes(content)
    if message is None:
        assert data.load_text(p, log=lambda s: None).startswith(" one two")
        return
    with pytest.raises(data.DataError, match=message) as e:
        data.load_text(p, log=lambda s: None)
    assert "\n" not in str(e.value) and str(p) in str(e.value)


def test_load_text_rejects_a_folder(tmp_path):
    with pytest.raises(data.DataError, match="folder"):
        data.load_text(tmp_path)


def test_split_is_90_5_5_by_position():
    ids = np.arange(1000) % 27
    train, valid, test = data.split(ids)
    assert (len(train), len(valid), len(test)) == (900, 50, 50)
    assert np.array_equal(np.concatenate([train, valid, test]), ids)
    assert [len(s) for s in data.split(np.zeros(1_244_397))] == [1_119_959, 62_219, 62_219]


def test_split_of_text8_size_is_the_standard_one():
    # 100M characters split 90M / 5M / 5M, the standard text8 split (no 100 MB array needed to check).
    n = data.TEXT8_SIZE
    held = n * 5 // 100
    assert (n - 2 * held, held) == (90_000_000, 5_000_000)
    train, valid, test = data.split(np.broadcast_to(np.uint8(0), (n,)))
    assert (len(train), len(valid), len(test)) == (90_000_000, 5_000_000, 5_000_000)


def test_entropies_of_hand_worked_texts():
    # "abab...": two letters equally often, each always followed by the other.
    h1, h2 = data.entropies(data.text_to_ids("ab" * 500))
    assert h1 == pytest.approx(1.0) and h2 == pytest.approx(0.0)
    # "aab" repeated: H(x) = H(1/3, 2/3); after a: a or b equally often (1 bit), after b: always a (0 bits).
    h1, h2 = data.entropies(data.text_to_ids("aab" * 1000))
    assert h1 == pytest.approx(-(1 / 3) * np.log2(1 / 3) - (2 / 3) * np.log2(2 / 3), abs=1e-3)
    assert h2 == pytest.approx(2 / 3, abs=1e-3)


@pytest.mark.slow
def test_data_script_reports_sizes_and_entropies(tmp_path):
    (tmp_path / "t.txt").write_text("ab" * 500)
    done = run_child(["data.py", tmp_path / "t.txt"])
    assert done.returncode == 0
    assert "1,000 characters; train 900, valid 50, test 50" in done.stdout
    assert "valid: unigram entropy 1.000 bits/char, bigram (given the previous character) 0.000" in done.stdout
    done = run_child(["data.py", tmp_path / "missing"])
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "no such file" in done.stderr


def test_a_zip_claiming_to_be_text8_is_checked(tmp_path):
    # A text8 member of exactly text8's size must have text8's SHA-1 (a damaged download would not).
    z = tmp_path / "text8.zip"
    with zipfile.ZipFile(z, "w", compression=zipfile.ZIP_DEFLATED) as f:
        f.writestr("text8", b" a" * (data.TEXT8_SIZE // 2))
    with pytest.raises(data.DataError, match="SHA-1 .* expected " + data.TEXT8_SHA1) as e:
        data.load_text(z)
    assert "download it again" in str(e.value) and "\n" not in str(e.value)


def zip_with_header_changed(path, flag=None, method=None):
    """A zip of one text member whose headers claim an encryption flag or a compression method Python lacks."""
    with zipfile.ZipFile(path, "w") as f:
        f.writestr("book.txt", "some english text")
    raw = bytearray(path.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # local header, central directory
        at = raw.index(signature)
        if flag is not None:
            raw[at + offset:at + offset + 2] = flag.to_bytes(2, "little")
        if method is not None:
            raw[at + offset + 2:at + offset + 4] = method.to_bytes(2, "little")
    path.write_bytes(bytes(raw))
    return path


@pytest.mark.parametrize("flag, method", [(1, None), (None, 99)], ids=["encrypted", "unknown-compression"])
def test_zips_python_cannot_read_are_one_line_errors(tmp_path, flag, method):
    path = zip_with_header_changed(tmp_path / "book.zip", flag, method)
    with pytest.raises(data.DataError, match="the zip cannot be read here") as e:
        data.load_text(path)
    assert "\n" not in str(e.value) and "unzip it by hand" in str(e.value)


def test_a_single_repeated_character_is_said_to_be_the_data(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("a" * 5000)
    with pytest.raises(data.DataError, match="a single character, 'a', repeated: there is nothing to predict"):
        data.load_text(path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_special_files_are_refused_before_reading(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)  # opening it would wait for a writer forever
    for path in (fifo, Path("/dev/zero")):  # /dev/zero would be read until memory runs out
        with pytest.raises(data.DataError, match="is not a regular file"):
            data.load_text(path)


def test_the_shipped_text_is_jargon8_in_text8s_format():
    ids, source = data.load_corpus(data.SHIPPED, log=lambda s: None)
    assert len(ids) == 1_244_397 and source == str(data.SHIPPED)
    text = data.ids_to_text(ids)
    assert hashlib.sha1(text.encode()).hexdigest() == "beaaff4166af9e424137983ed6cf61172f45c9af"
    assert data.is_clean(text)
