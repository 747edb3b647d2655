"""requirements.txt picks the TensorFlow wheel each supported platform has (the markers, evaluated offline
the way .ci/check_platforms.py evaluates them before asking pip to resolve the rest)."""
import importlib.util
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location(
    "check_platforms", Path(__file__).resolve().parent.parent / ".ci" / "check_platforms.py")
check_platforms = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_platforms)


@pytest.mark.parametrize("platform, tensorflow", [("Linux x86_64", "tensorflow-cpu==2.21.0"),
                                                  ("Windows x86_64", "tensorflow-cpu==2.21.0"),
                                                  ("macOS arm64", "tensorflow==2.21.0"),
                                                  ("Linux aarch64", "tensorflow==2.21.0")])
@pytest.mark.parametrize("python", check_platforms.PYTHONS)
def test_each_platform_gets_exactly_one_tensorflow(platform, tensorflow, python):
    environment = {**check_platforms.PLATFORMS[platform][0], "python_version": python,
                   "python_full_version": f"{python}.0", "implementation_name": "cpython",
                   "platform_python_implementation": "CPython"}
    chosen = check_platforms.requirements_for(environment)
    assert [r for r in chosen if r.startswith("tensorflow")] == [tensorflow]
    assert {r.split("==")[0] for r in chosen} == {"tensorflow-cpu" if "cpu" in tensorflow else "tensorflow",
                                                  "numpy", "requests", "tqdm", "matplotlib"}
