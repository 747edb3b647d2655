"""The README's commands are accepted by the scripts they name, so that the README cannot drift from the code:
every `python SCRIPT ...` line of its fenced blocks is parsed by that script's own command line, and every
file it passes as --data exists in a fresh clone."""
import re
import shlex
from pathlib import Path

import pytest

import evaluate
import experiments
import sample
import arch1_hidden
import arch2_output
from machinery import settings

ROOT = Path(__file__).resolve().parent.parent
PARSERS = {"sample.py": sample.build_parser, "evaluate.py": evaluate.build_parser,
           "experiments.py": experiments.build_parser,
           **{f"{m.ARCHITECTURE}.py": (lambda m: lambda: settings.build_parser(m.ARCHITECTURE, m.HPARAMS))(m)
              for m in (arch1_hidden, arch2_output)}}


def readme_commands():
    """(line, script, arguments) of each `python SCRIPT ...` command in the README's bash blocks."""
    text = (ROOT / "README.md").read_text()
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.DOTALL):
        for line in block.splitlines():
            for command in line.split("#")[0].split("&&"):  # `pip install ... && python ...`; comments dropped
                words = shlex.split(command.split(">")[0].replace("&", " "))  # `> train.log &` is the shell's
                if len(words) >= 2 and words[0] == "python" and words[1].endswith(".py"):
                    found.append((line.strip(), words[1], words[2:]))
    return found


COMMANDS = readme_commands()


def test_the_readme_has_its_quick_start():
    scripts = {script for _, script, _ in COMMANDS}
    assert {"arch1_hidden.py", "arch2_output.py", "sample.py", "evaluate.py"} <= scripts
    assert any("--graph" in args and "fast" in args for _, _, args in COMMANDS)  # the opt-in, where a user sees it
    first_lines = "\n".join((ROOT / "README.md").read_text().splitlines()[:80])
    assert "../shared" not in first_lines


@pytest.mark.parametrize("line, script, args", COMMANDS, ids=[line for line, _, _ in COMMANDS])
def test_a_readme_command_is_accepted(line, script, args):
    assert script in PARSERS, f"the README runs {script}, which this test does not know"
    if args == ["--help"]:
        with pytest.raises(SystemExit) as done:
            PARSERS[script]().parse_args(args)
        assert done.value.code == 0
        return
    parsed = vars(PARSERS[script]().parse_args(args))  # a bad option exits here, failing the test
    if parsed.get("data"):
        assert (ROOT / parsed["data"]).exists(), f"{line}: {parsed['data']} is not in the repository"


def test_the_readme_trainings_do_not_share_a_folder():
    """Run one after the other as a newcomer would, no training would find its folder taken by another."""
    folders = []
    for line, script, args in COMMANDS:
        if script in ("arch1_hidden.py", "arch2_output.py") and args != ["--help"]:
            parsed = vars(PARSERS[script]().parse_args(args))
            folders.append(parsed.get("out", f"checkpoints/{script.split('_')[0]}"))
    assert len(folders) >= 4 and len(folders) == len(set(folders)), folders
