"""The post's "Batches" section: batch_size cursors walk through the text and yield mega-batches."""
import numpy as np

from data import DataError, alphabet_size, one_hot

CHUNK_BYTES = 64 * 1024  # mega-batches are cut from the text about this many bytes at a time


class BatchGenerator:
    """Yields mega-batches: num_unrollings + 1 one-hot float32 arrays [batch_size, 27].

    Cursor b starts at b * (len(text) // batch_size). Each call to next() returns the last array of the
    previous call followed by num_unrollings new ones, so inputs are arrays[:-1] and labels (the next
    characters) are arrays[1:]. Cursors wrap around the end of the text.
    """

    def __init__(self, ids, batch_size, num_unrollings, name="text"):
        if int(batch_size) < 1 or int(num_unrollings) < 1:
            raise ValueError(f"batch_size and num_unrollings must be at least 1, "
                             f"got {batch_size} and {num_unrollings}")
        needed = batch_size * (num_unrollings + 1)
        if len(ids) < needed:
            raise DataError(
                f"the {name} split has {len(ids):,} characters, too few for batch_size {batch_size} x "
                f"(num_unrollings {num_unrollings} + 1) = {needed:,}; use a longer text or smaller sizes")
        self._ids = np.asarray(ids, dtype=np.uint8)
        if self._ids.size and self._ids.max() >= alphabet_size:
            raise ValueError(f"ids must lie in 0..{alphabet_size - 1}")
        self.batch_size = batch_size
        self.num_unrollings = num_unrollings
        segment = len(ids) // batch_size
        self._cursors = np.arange(batch_size, dtype=np.int64) * segment  # [batch_size], as the last chunk was cut
        self._offsets = np.arange(num_unrollings + 1, dtype=np.int64)  # [num_unrollings + 1]
        self._ahead = []  # mega-batches already cut, next one last
        self._handed = 0  # mega-batches handed out since the last chunk was cut

    def next(self):
        """The next mega-batch: a list of num_unrollings + 1 arrays [batch_size, 27]."""
        return list(one_hot(self.next_ids()))

    def next_ids(self):
        """The next mega-batch as ids, [num_unrollings + 1, batch_size] uint8: what next() one-hot encodes.

        The training loop feeds these and the graph one-hot encodes them (tf.one_hot): the same arrays,
        without shipping 27 floats per character into every Session.run. They are cut CHUNK_BYTES at a time:
        right after a training step has run, the caches are cold and cutting one mega-batch took ~55 us.
        """
        if not self._ahead:
            self._cursors, self._handed = self._next_cursors(), 0
            count = max(1, CHUNK_BYTES // self._offsets.size // self.batch_size)  # mega-batches in the chunk
            starts = self._cursors + self.num_unrollings * np.arange(count)[:, None, None]  # [count, 1, B]
            chunk = self._ids.take(starts + self._offsets[:, None], mode="wrap")  # past the end wraps around
            self._ahead = list(chunk[::-1])  # popped from the end, so in order
        self._handed += 1
        return self._ahead.pop()

    def _next_cursors(self):
        """Where the cursors of the next mega-batch stand: [batch_size] positions in the text."""
        return (self._cursors + self.num_unrollings * self._handed) % len(self._ids)

    __next__ = next

    def __iter__(self):
        return self

    def position(self):
        """The cursors as a list of ints (JSON-friendly), to save with a checkpoint."""
        return self._next_cursors().tolist()

    def restore(self, position):
        """Puts the cursors back where position() said they were."""
        cursors = np.asarray(position, dtype=np.int64)
        if cursors.shape != (self.batch_size,) or (cursors < 0).any() or (cursors >= len(self._ids)).any():
            raise DataError(f"the saved batch position does not fit this text and batch_size {self.batch_size}")
        self._cursors, self._ahead, self._handed = cursors, [], 0
