"""The post's "Batches" section: a Batch holds batch_size cursors over the text, and getWindowBatch takes the
next window of num_unrollings characters (and their labels, the characters after them) at every cursor.

    batch = Batch(train_ids, batch_size)                       # cursor b starts at b * (len(text) // batch_size)
    batch_x, batch_y = getWindowBatch(batch, num_unrollings)   # [num_unrollings, batch_size] ids each

As the post says, "the class doesn't actually create a mega batch": the Session loop does, one-hot encoding
batch_x and batch_y into mega_batch_x and mega_batch_y, lists of num_unrollings arrays [batch_size, 27].
"""
import numpy as np

from data import DataError, alphabet_size


class Batch:
    """batch_size cursors over a text of ids, each keeping track of where its stream of characters stands
    (the post's Figures 12-14). Cursor b starts at b * segment, segment = len(text) // batch_size, so the
    streams start evenly spread through the text; getWindowBatch moves them on."""

    def __init__(self, text, batch_size):
        self.text = np.asarray(text, dtype=np.uint8)  # the characters as ids 0..26
        if self.text.size and self.text.max() >= alphabet_size:
            raise ValueError(f"ids must lie in 0..{alphabet_size - 1}")
        if not 1 <= int(batch_size) <= self.text.size:
            raise ValueError(f"batch_size must lie in 1..{self.text.size}, got {batch_size}")
        self.batch_size = batch_size
        segment = len(self.text) // batch_size
        self.cursors = np.arange(batch_size, dtype=np.int64) * segment  # [batch_size] positions in the text


def getWindowBatch(b, num_unrollings):
    """Takes in a Batch object and spits out inputs and labels: (batch_x, batch_y), [num_unrollings,
    batch_size] ids each. Row t of batch_x holds the character at every cursor t steps on, and the same row
    of batch_y the character after it, the one to predict. The cursors then move num_unrollings characters
    on, wrapping around the end of the text, so that the next window continues this one."""
    positions = b.cursors + np.arange(num_unrollings)[:, None]  # [num_unrollings, batch_size]
    batch_x = b.text.take(positions, mode="wrap")
    batch_y = b.text.take(positions + 1, mode="wrap")  # "the labels are just the next character"
    b.cursors = (b.cursors + num_unrollings) % len(b.text)
    return batch_x, batch_y


def check_size(text, batch_size, num_unrollings, name="text"):
    """DataError unless text has enough characters for batch_size streams of one window each."""
    needed = batch_size * (num_unrollings + 1)
    if len(text) < needed:
        raise DataError(f"the {name} split has {len(text):,} characters, too few for batch_size {batch_size} x "
                        f"(num_unrollings {num_unrollings} + 1) = {needed:,}; use a longer text or smaller sizes")
