"""bench.py must not rot: a quick run with every option."""
import json

import pytest

import bench


@pytest.mark.slow
def test_quick_benchmark_with_every_option(tmp_path, capsys):
    assert bench.main(["--quick", "--memory", "--json", str(tmp_path / "bench.json")]) == 0
    printed = capsys.readouterr().out
    figures = json.loads((tmp_path / "bench.json").read_text())
    assert set(figures["training"]) == {bench.CONFIGS[i][0] for i in bench.QUICK}
    for way in ("the post's way", "post graph", "fast graph"):  # the three side by side
        assert any(name.endswith(way) for name in figures["training"]), way
    for name, result in figures["training"].items():
        assert result["chars_per_second"] > 1000 and result["steps"] >= 40
        assert name in printed
    assert figures["eval_chars"] == 20_000 and figures["eval_chars_per_second"] > 1000
    assert figures["sampling_chars_per_second"] > 100
    assert 100 < figures["peak_memory_mb"] < 24_000 and figures["memory_corpus_chars"] == 1_000_000
    assert "sampling (arch1 default, fast graph, batch 1)" in printed


def test_the_listings_way_feeds_the_same_mega_batches_as_the_scripts():
    """The baseline's per-character getWindowBatch and mega batches give the same arrays as batches.py and
    the scripts' one-hot lines (so that the two ways train on the same arrays)."""
    import numpy as np

    import data
    from batches import Batch, getWindowBatch
    ids = data.text_to_ids("the quick brown fox jumps over the lazy dog " * 3)
    ours, theirs = Batch(ids, 3), Batch(ids, 3)
    for _ in range(5):
        batch_x, batch_y = getWindowBatch(ours, 4)
        listing_x, listing_y = bench.listing_window(theirs, 4)
        np.testing.assert_array_equal(np.array(bench.listing_mega_batch(listing_x)), data.one_hot(batch_x))
        np.testing.assert_array_equal(np.array(bench.listing_mega_batch(listing_y)), data.one_hot(batch_y))
        assert list(theirs.cursors) == ours.cursors.tolist()
