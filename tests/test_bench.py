"""bench.py must not rot: a quick run with every option."""
import json

import bench


def test_quick_benchmark_with_every_option(tmp_path, capsys):
    assert bench.main(["--quick", "--memory", "--json", str(tmp_path / "bench.json")]) == 0
    printed = capsys.readouterr().out
    figures = json.loads((tmp_path / "bench.json").read_text())
    assert set(figures["training"]) == {bench.CONFIGS[i][0] for i in bench.QUICK}
    assert any("post graph" in name for name in figures["training"])
    for name, result in figures["training"].items():
        assert result["chars_per_second"] > 1000 and result["bare_step_chars_per_second"] > 1000
        assert -1 < result["loop_overhead"] < 1 and result["validation_seconds"] >= 0
        assert name in printed
    assert figures["eval_chars"] == 20_000 and figures["eval_chars_per_second"] > 1000
    assert figures["sampling_chars_per_second"] > 100
    assert 100 < figures["peak_memory_mb"] < 24_000 and figures["memory_corpus_chars"] == 1_000_000
    assert "sampling (arch1 default, fast graph, batch 1)" in printed
