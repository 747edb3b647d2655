"""Resolves requirements.txt to binary wheels for each platform and Python version the README supports.

pip evaluates environment markers against the machine it runs on, not against --platform, so this script
evaluates the markers of requirements.txt for each target itself, then asks pip to resolve what remains
(pip install --dry-run --only-binary=:all: --platform ... --python-version ...). Markers inside the
dependencies' own metadata are still evaluated by pip for this machine: the check proves that every pinned
package has a wheel for the target, not the exact set of transitive dependencies there. Exits non-zero,
naming each platform that failed.
"""
import subprocess
import sys
import tempfile
from pathlib import Path

try:
    from packaging.requirements import Requirement
except ImportError:  # pip carries its own copy
    from pip._vendor.packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
PYTHONS = ("3.11", "3.12", "3.13")
# name: (marker environment, the wheel tags a machine of that kind accepts, newest first)
PLATFORMS = {
    "Linux x86_64": ({"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
                      "os_name": "posix"},
                     ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
                      "manylinux2014_x86_64"]),
    "Linux aarch64": ({"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "aarch64",
                       "os_name": "posix"},
                      ["manylinux_2_28_aarch64", "manylinux_2_27_aarch64", "manylinux_2_17_aarch64",
                       "manylinux2014_aarch64"]),
    "macOS arm64": ({"sys_platform": "darwin", "platform_system": "Darwin", "platform_machine": "arm64",
                     "os_name": "posix"},
                    ["macosx_14_0_arm64", "macosx_13_0_arm64", "macosx_12_0_arm64", "macosx_11_0_arm64",
                     "macosx_14_0_universal2", "macosx_11_0_universal2", "macosx_10_9_universal2"]),
    "Windows x86_64": ({"sys_platform": "win32", "platform_system": "Windows", "platform_machine": "AMD64",
                        "os_name": "nt"},
                       ["win_amd64"]),
}


def requirements_for(environment):
    """The lines of requirements.txt whose markers hold in environment, without the markers."""
    kept = []
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate(environment):
            requirement.marker = None
            kept.append(str(requirement))
    return kept


def resolve(name, python):
    """(ok, what pip said last) of resolving requirements.txt for a platform and Python version."""
    environment, tags = PLATFORMS[name]
    environment = {**environment, "python_version": python, "python_full_version": f"{python}.0",
                   "implementation_name": "cpython", "platform_python_implementation": "CPython"}
    with tempfile.TemporaryDirectory() as tmp:
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text("\n".join(requirements_for(environment)) + "\n")
        command = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed",
                   "--only-binary=:all:", "--python-version", python, "--target", str(Path(tmp) / "target"),
                   *[arg for tag in tags for arg in ("--platform", tag)], "-r", str(requirements)]
        done = subprocess.run(command, capture_output=True, text=True)
    said = [line for line in (done.stderr + done.stdout).splitlines() if line.startswith("ERROR")]
    return done.returncode == 0, (said[-1] if said else "")


def main():
    failed = []
    for name in PLATFORMS:
        for python in PYTHONS:
            ok, said = resolve(name, python)
            print(f"{'ok    ' if ok else 'FAILED'} {name}, Python {python}" + ("" if ok else f": {said}"), flush=True)
            if not ok:
                failed.append(f"{name}, Python {python}")
    if failed:
        print(f"requirements.txt does not resolve to wheels on: {'; '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
