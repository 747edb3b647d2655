"""Shared test setup: the project root on sys.path, TensorFlow quiet, and the rule of the slow marker.

A test is slow when it trains a model through a script's command line, uses a fixture that does (trained,
run_dir, runs), or starts a process; `python -m pytest -m "not slow"` leaves those out and runs the rest (graphs
against the numpy reference, batches, data, settings, n-grams). The rule is applied here, from each test's own
source, so that no test can be filed on the wrong side of it; @pytest.mark.slow may also be written by hand.
"""
import inspect
import os
import re
import sys

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TRAINS_OR_STARTS = re.compile(r"\b(arch1_hidden|arch2_output|module|sample|evaluate|gradients|experiments|bench|plot)"
                              r"\.main\(|(?<![.\w])(child|run_child|recorded_windows|script|train|run)\(")
TRAINING_FIXTURES = {"trained", "run_dir", "runs"}


def pytest_collection_modifyitems(items):
    for item in items:
        source = inspect.getsource(item.function)
        if TRAINS_OR_STARTS.search(source) or TRAINING_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)
