"""The docs cannot drift from the code: every link in the README and docs/ leads to a file or heading that
exists, every test they cite exists, none names a path of the machine it was written on, and the commands of
docs/usage.md run, in the order shown, on a fresh copy of the repository."""
import ast
import re
import shlex
import shutil
from pathlib import Path

import pytest

from helpers import run_child

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def slug(heading):
    """The anchor GitHub gives a heading: lowercase, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def headings(page):
    return {slug(h) for h in re.findall(r"^#+ (.*)$", page.read_text(), re.MULTILINE)}


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_link_leads_somewhere(page):
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        where = (page.parent / path).resolve() if path else page
        assert where.exists(), f"{page.name}: {target} leads nowhere"
        if anchor:
            assert anchor in headings(where), f"{page.name}: {target}: no such heading in {where.name}"


def known_tests():
    """{file name: names of its test functions} of tests/."""
    return {f.name: {n.name for n in ast.walk(ast.parse(f.read_text())) if isinstance(n, ast.FunctionDef)}
            for f in (ROOT / "tests").glob("test_*.py")}


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_test_cited_exists(page):
    known = known_tests()
    current = None
    for file, name in re.findall(r"(?:tests/)?(test_\w+\.py)?::(test_\w+)", page.read_text()):
        current = file or current  # `test_a.py::x`, `::y` cites test_a.py's y
        assert current in known, f"{page.name}: {current} is not a test file"
        assert name in known[current], f"{page.name}: {current}::{name} is not a test"


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_no_page_names_a_path_users_do_not_have(page):
    text = page.read_text()
    assert "../shared" not in text
    assert not re.search(r"(?<![\w.])/(work|tmp|home|root|Users)/", text), page.name


def test_the_readme_holds_no_dates_and_reads_in_five_minutes():
    text = (ROOT / "README.md").read_text()
    assert not re.search(r"\b20\d\d-\d\d-\d\d\b", text)
    assert len(text.split()) <= 1100


def usage_commands():
    """The `python ...` commands of docs/usage.md's bash blocks, in order, as argument lists."""
    text = (ROOT / "docs" / "usage.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line.split(" #")[0])
            if words[:1] == ["python"]:
                commands.append(words[1:])
    return commands


SHORT = {"--num-steps": "40", "--length": "20", "--num-samples": "1", "--time-budget": "0.02"}
TINY = ["--batch-size", "4", "--num-nodes", "8", "--num-unrollings", "5", "--eval-frequency", "20",
        "--summary-frequency", "10", "--valid-chars", "500"]


def shortened(args):
    """A command of usage.md made quick: trainings cut to a few steps of a tiny model (a resumed one keeps its
    model), samples to a few characters."""
    args = [SHORT.get(args[i - 1], a) if i and args[i - 1] in SHORT else a for i, a in enumerate(args)]
    if args[0] in ("arch1_hidden.py", "arch2_output.py") and "--resume" not in args and "--help" not in args:
        args += TINY + ([] if "--num-steps" in args else ["--num-steps", "40"])
    return args


@pytest.mark.slow
def test_the_usage_page_runs_in_order_on_a_fresh_copy(tmp_path):
    commands = usage_commands()
    assert len(commands) >= 8
    copy = tmp_path / "clone"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".git", "checkpoints", "__pycache__", ".pytest_cache",
                                                              "text8.zip"))
    for args in commands:
        done = run_child(shortened(args), cwd=copy)
        assert done.returncode == 0, f"python {' '.join(args)}:\n{done.stderr[-2000:]}"
        assert "Traceback" not in done.stderr
