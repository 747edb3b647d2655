"""Data for the post: the text8 download, the split, the 27-character alphabet and its helpers.

The post's "Data" section in code, in its order: download text8 (or read any text with --data) and split it
into train / valid / test; then the alphabet, characters to ids and one-hot vectors, a vector as a 2-D array,
sampling from a distribution and a random distribution over the alphabet.
"""
if __name__ == "__main__":  # python data.py: first, Ctrl-C while numpy loads exits quietly
    import machinery.startup  # noqa: F401
import errno
import hashlib
import os
import re
import string
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np


from machinery.command import UserError, run_command


class DataError(UserError):
    """A problem with the data that the user can fix; its message is one line saying how."""


# ---------------------------------------------------------------------------------------------
# text8: download, cache, verify.
# ---------------------------------------------------------------------------------------------
TEXT8_URL = "http://mattmahoney.net/dc/text8.zip"
TEXT8_ZIP_SIZE = 31_344_016  # bytes of text8.zip
TEXT8_SIZE = 100_000_000  # characters of the unzipped member
TEXT8_SHA1 = "0dc3edebc970dcc96137e7deda4d9995af9d93de"  # of the unzipped member, as gluon-nlp publishes it
TEXT8_MEMBER = "text8"
DEFAULT_CACHE = Path(__file__).resolve().parent / "data"
TIMEOUT = (10, 60)  # seconds to connect, and to wait for each chunk of the body


SHIPPED = Path(__file__).resolve().parent / "data" / "jargon8.zip"  # a small public-domain text, in the repository


def _shipped_path():
    """The shipped text's path as a user would type it here: relative to the current folder when inside it."""
    try:
        return os.path.relpath(SHIPPED) if not os.path.relpath(SHIPPED).startswith("..") else str(SHIPPED)
    except ValueError:  # another drive (Windows)
        return str(SHIPPED)


def _download_failed(reason, url, path):
    return DataError(
        f"could not get text8: {reason} ({url}). Download it by hand to {path}, or train on another text "
        f"with --data PATH; to start offline, this repository ships one: --data {_shipped_path()}")


def download_text8(cache_dir=DEFAULT_CACHE, url=None, size=None, sha1=None, timeout=TIMEOUT):
    """Path of the verified text8.zip in cache_dir, downloaded first if missing; DataError on any failure.

    url, size and sha1 default to text8's (TEXT8_URL, TEXT8_ZIP_SIZE, TEXT8_SHA1).

    The body streams into a temporary file that becomes text8.zip only after its size and the SHA-1 of
    its text8 member check out, so no failure leaves a file that a later run would accept.
    """
    import requests
    from tqdm import tqdm

    url, size, sha1 = url or TEXT8_URL, size or TEXT8_ZIP_SIZE, sha1 or TEXT8_SHA1
    path = Path(cache_dir) / "text8.zip"
    if path.exists():
        try:
            _verify_text8_zip(path, sha1)
        except DataError as e:
            path.unlink()
            raise _download_failed(f"the cached file was bad and has been removed: {e}", url, path) from None
        return path

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _download_failed(f"cannot create the cache folder: {e.strerror}", url, path) from None
    fd, tmp = tempfile.mkstemp(prefix="text8.zip.", suffix=".part", dir=path.parent)
    try:
        try:
            with requests.get(url, stream=True, timeout=timeout) as response, os.fdopen(fd, "wb") as out:
                if response.status_code != 200:
                    raise _download_failed(f"the server answered HTTP {response.status_code}", url, path)
                with tqdm(total=size, unit="B", unit_scale=True, desc="text8.zip", disable=None) as bar:
                    for chunk in response.iter_content(chunk_size=1 << 20):
                        out.write(chunk)
                        bar.update(len(chunk))
        except requests.ConnectionError:
            raise _download_failed("could not connect (no network?)", url, path) from None
        except requests.Timeout:
            raise _download_failed("the server did not answer in time", url, path) from None
        except requests.RequestException as e:
            raise _download_failed(f"the download broke off ({type(e).__name__})", url, path) from None
        got = os.path.getsize(tmp)
        if got != size:
            raise _download_failed(f"received {got:,} bytes, expected {size:,}", url, path)
        try:
            _verify_text8_zip(tmp, sha1)
        except DataError as e:
            raise _download_failed(str(e), url, path) from None
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _verify_text8_zip(path, sha1):
    """Checks that path is a zip whose text8 member has the given SHA-1; DataError otherwise."""
    try:
        with zipfile.ZipFile(path) as z:
            if TEXT8_MEMBER not in z.namelist():
                raise DataError(f"the zip has no '{TEXT8_MEMBER}' member")
            digest = hashlib.sha1(z.read(TEXT8_MEMBER)).hexdigest()
    except (zipfile.BadZipFile, EOFError, OSError, zlib.error) as e:
        raise DataError(f"the file is not a valid zip ({e})") from None
    if digest != sha1:
        raise DataError(f"the '{TEXT8_MEMBER}' member has SHA-1 {digest}, expected {sha1}")


# ---------------------------------------------------------------------------------------------
# Loading a corpus: text8 by default, or any file given with --data.
# ---------------------------------------------------------------------------------------------
def _read_bytes(path):
    """Bytes of a text file, or of the text8 (or only) member of a zip."""
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as z:
                names = [n for n in z.namelist() if not n.endswith("/")]
                if TEXT8_MEMBER in names:
                    name = TEXT8_MEMBER
                elif len(names) == 1:
                    name = names[0]
                else:
                    raise DataError(f"{path}: a zip must hold a '{TEXT8_MEMBER}' member or exactly one "
                                    f"file, this one holds {len(names)}; unzip the text you want and pass it")
                _check_fits_in_memory(path, z.getinfo(name).file_size)
                raw = z.read(name)
        except (zipfile.BadZipFile, EOFError, zlib.error) as e:  # zlib.error: its compressed data is damaged
            raise DataError(f"{path}: the zip is damaged ({e}); download it again, or unzip it by hand and pass "
                            f"the text") from None
        except (RuntimeError, NotImplementedError) as e:  # encrypted, or compressed in a way Python cannot read
            raise DataError(f"{path}: the zip cannot be read here ({e}); unzip it by hand and pass the text") from None
        if name == TEXT8_MEMBER and len(raw) == TEXT8_SIZE:  # it claims to be text8: check it is
            digest = hashlib.sha1(raw).hexdigest()
            if digest != TEXT8_SHA1:
                raise DataError(f"{path}: its text8 member has SHA-1 {digest}, expected {TEXT8_SHA1}; "
                                f"the file is damaged, download it again")
        return raw
    _check_fits_in_memory(path, os.path.getsize(path))
    raw = Path(path).read_bytes()
    if raw.startswith(b"PK\x03\x04"):  # a zip's first bytes, but no zip's directory at its end
        raise DataError(f"{path} is a damaged or truncated zip; download it again, or unzip it by hand and pass "
                        f"the text")
    return raw


def check_path(path):
    """DataError unless path is a regular file that can be read: said before any work is done."""
    path = Path(path)
    try:
        path.stat()
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise DataError(f"{path}: a loop of symbolic links, not a file; pass --data PATH to a text file "
                            f"or a text8 zip") from None
        raise DataError(f"{path}: no such file; pass --data PATH to a text file or a text8 zip") from None
    if path.is_dir():
        raise DataError(f"{path} is a folder; pass --data PATH to a text file or a text8 zip")
    if not path.is_file():  # a FIFO would wait for a writer forever, /dev/zero never ends
        raise DataError(f"{path} is not a regular file; pass --data PATH to a text file or a text8 zip")


def _check_fits_in_memory(path, size):
    """DataError if a text of size bytes, with its ids, cannot be held in this machine's memory (a huge or a
    sparse file is refused before it is read)."""
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # the platform does not say (Windows)
        return
    if 3 * size > memory:
        raise DataError(f"{path} holds {size / 2 ** 30:,.1f} GB of text, too much for this machine's "
                        f"{memory / 2 ** 30:,.1f} GB of memory; pass a smaller text")


def load_text(path, log=print):
    """The corpus at path as clean text over the alphabet; says when it cleaned; DataError if unusable."""
    path = Path(path)
    check_path(path)
    try:
        raw = _read_bytes(path)
    except OSError as e:
        raise DataError(f"{path}: cannot read it ({e.strerror})") from None
    if not raw.strip():
        raise DataError(f"{path} is empty; pass a file with some English text")
    if b"\0" in raw[:1 << 20]:
        raise DataError(f"{path} looks binary (it holds NUL bytes); pass a UTF-8 text file or a text8 zip")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text (bad byte at offset {e.start}); "
                        f"convert it to UTF-8 first") from None
    if not is_clean(text):
        text = clean_text(text)
        log(f"{path}: cleaned with the text8 rules (lowercase, digits spelled out, other characters "
            f"to spaces): {len(text):,} characters kept")
    if not re.search("[a-z]", text):
        raise DataError(f"{path} holds no letters a-z after cleaning; pass a file with English text")
    if len(set(text)) < 2:
        raise DataError(f"{path} holds a single character, {text[0]!r}, repeated: there is nothing to predict; "
                        f"pass a file with English text")
    return text


def load_corpus(data=None, cache_dir=None, log=print):
    """(ids, source): the corpus as a uint8 array of ids, from --data PATH or else text8, downloaded into
    cache_dir (default DEFAULT_CACHE, the data/ folder of the repository)."""
    if data is None:
        path = download_text8(cache_dir or DEFAULT_CACHE)
        source = "text8"
    else:
        path = Path(data)
        check_path(path)
        source = str(path.resolve())
    ids = text_to_ids(load_text(path, log=log))
    return ids, source


def split(ids):
    """(train, valid, test): the first 90%, the next 5% and the last 5% (text8: 90M / 5M / 5M)."""
    held_out = len(ids) * 5 // 100
    train_end = len(ids) - 2 * held_out
    return ids[:train_end], ids[train_end:train_end + held_out], ids[train_end + held_out:]


# ---------------------------------------------------------------------------------------------
# The alphabet: ' ' is id 0, then 'a'..'z' are 1..26, as in the post's code.
# ---------------------------------------------------------------------------------------------
ALPHABET = " " + string.ascii_lowercase
alphabet_size = len(ALPHABET)  # 27

_CHAR_TO_ID = {c: i for i, c in enumerate(ALPHABET)}
_BYTE_TO_ID = np.full(256, 255, dtype=np.uint8)  # ASCII byte -> id, 255 outside the alphabet
for _c, _i in _CHAR_TO_ID.items():
    _BYTE_TO_ID[ord(_c)] = _i


def char2id(char):
    """Id of one alphabet character; ValueError naming the character otherwise (the notebooks mapped it to a
    space: here every text is cleaned first, so a stray character is a mistake to show, not to hide)."""
    try:
        return _CHAR_TO_ID[char]
    except KeyError:
        raise ValueError(f"character {char!r} is not in the alphabet (' ' and 'a'..'z')") from None


def id2char(char_id):
    """Alphabet character of an id in 0..26; ValueError otherwise."""
    if not 0 <= int(char_id) < alphabet_size:
        raise ValueError(f"id {char_id!r} is outside the alphabet (0..{alphabet_size - 1})")
    return ALPHABET[int(char_id)]


def text_to_ids(text):
    """uint8 array of ids of a string over the alphabet (vectorised); ValueError naming a stray character."""
    raw = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    ids = _BYTE_TO_ID[raw]
    if raw.size != len(text) or (ids == 255).any():
        bad = next(c for c in text if c not in _CHAR_TO_ID)
        raise ValueError(f"character {bad!r} is not in the alphabet (' ' and 'a'..'z')")
    return ids


def ids_to_text(ids):
    """String of an array of ids."""
    return "".join(ALPHABET[i] for i in np.asarray(ids).ravel())


_ONE_HOT_ROWS = np.eye(alphabet_size, dtype=np.float32)  # row i: the one-hot vector of id i


def one_hot(ids):  # the listings' char2vec, for any array of ids at once
    """One-hot float32 encoding: an id gives a [27] vector, an array of ids gets a trailing axis of 27."""
    ids = np.asarray(ids)
    if ids.size and (ids.min() < 0 or ids.max() >= alphabet_size):
        raise ValueError(f"ids must lie in 0..{alphabet_size - 1}")
    return _ONE_HOT_ROWS.take(ids, axis=0)


def vec2mat(vector):
    """One-hot (or probability) vector [27] -> 2-D array [1, 27], the shape a matmul with U needs."""
    return np.reshape(vector, (1, -1))


def sample_distribution(distribution, rng=None):  # the listings' sample_prob
    """Draws one id from a probability vector over the alphabet (a [27] or [1, 27] array)."""
    rng = np.random.default_rng() if rng is None else rng
    cumulative = np.cumsum(np.asarray(distribution, dtype=np.float64).ravel())
    # the first id whose cumulative probability exceeds a uniform draw (5x faster than rng.choice)
    return int(min(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"), cumulative.size - 1))


def random_distribution(rng=None):  # the listings' random_dist
    """A random probability distribution over the alphabet, [1, 27]: how generation starts."""
    rng = np.random.default_rng() if rng is None else rng
    b = rng.uniform(0.0, 1.0, size=(1, alphabet_size))
    return b / b.sum(axis=1, keepdims=True)


def characters(probabilities):
    """Most likely character of each row of a [N, 27] array of probabilities (or one-hot rows)."""
    return [ALPHABET[i] for i in np.argmax(probabilities, axis=1)]


def batches2string(batches):
    """Strings the batch streams spell: a list of [batch_size, 27] arrays -> batch_size strings."""
    s = [""] * batches[0].shape[0]
    for b in batches:
        s = ["".join(x) for x in zip(s, characters(b))]
    return s


# ---------------------------------------------------------------------------------------------
# Cleaning other text with text8's rules (Matt Mahoney's wikifil.pl).
# ---------------------------------------------------------------------------------------------
_DIGIT_WORDS = "zero one two three four five six seven eight nine".split()
_CLEAN_TABLE = str.maketrans(
    {**{c.upper(): c for c in string.ascii_lowercase},
     **{str(d): f" {w} " for d, w in enumerate(_DIGIT_WORDS)}})
_NOT_ALPHABET = re.compile(r"[^a-z ]+")
_SPACES = re.compile(r" {2,}")


def clean_text(text):
    """text8 rules: A-Z lowercased, digits spelled out (' zero '..' nine '), anything else one space."""
    text = text.translate(_CLEAN_TABLE)
    return _SPACES.sub(" ", _NOT_ALPHABET.sub(" ", text))


def is_clean(text):
    """True when the text already follows the text8 rules (only the alphabet, no double spaces)."""
    return _NOT_ALPHABET.search(text) is None and "  " not in text


def entropies(ids):
    """(unigram, bigram) entropies in bits per character of a text, from its own counts: H(x_t) and
    H(x_t | x_{t-1}), the best a model that sees no context, or only the previous character, can do on it."""
    ids = np.asarray(ids, dtype=np.int64)
    unigram = np.bincount(ids, minlength=alphabet_size) / len(ids)
    pairs = np.bincount(ids[:-1] * alphabet_size + ids[1:], minlength=alphabet_size ** 2)
    pairs = pairs.reshape(alphabet_size, alphabet_size) / (len(ids) - 1)
    previous = pairs.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        h1 = -np.sum(np.where(unigram > 0, unigram * np.log2(unigram), 0.0))
        h2 = -np.sum(np.where(pairs > 0, pairs * np.log2(pairs / previous), 0.0))
    return float(h1) + 0.0, max(0.0, float(h2))  # never "-0.000"


def describe(argv):
    """python data.py [PATH]: loads a corpus (text8 without PATH) and reports its size, split and entropies;
    returns the exit status."""
    corpus, source = load_corpus(argv[0] if argv else None, log=lambda s: print(s, file=sys.stderr))
    parts = split(corpus)
    print(f"{argv[0] if argv else source}: {len(corpus):,} characters; train {len(parts[0]):,}, valid {len(parts[1]):,}, "
          f"test {len(parts[2]):,}")
    for name, part in zip(("train", "valid", "test"), parts):
        h1, h2 = entropies(part)
        print(f"{name}: unigram entropy {h1:.3f} bits/char, bigram (given the previous character) {h2:.3f}")
    return 0


if __name__ == "__main__":  # the tools' contract: one line for a mistake, 130 for Ctrl-C, a full disk said
    sys.exit(run_command("data.py", describe, sys.argv[1:]))
