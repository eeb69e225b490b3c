"""The README's commands are true: its runnable blocks run, on tiny budgets, and every `robotrl`
line in it parses with the real CLI.

A fenced ```bash or ```python block is runnable when the line just before it is
`<!-- runnable -->`. The runnable blocks run in README order in one scratch directory (a later
block uses the data and runs of an earlier one). Each `robotrl` command line gets the flags of
BUDGETS appended: argparse keeps the last value of an option, so they override the README's
figures (100 episodes, 2,000 steps, 48 minutes) with ones that take seconds.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from robotrl.cli.main import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MARKER = "<!-- runnable -->"

# Flags appended to a command line that starts with the key (the longest key that matches).
BUDGETS = {
    "robotrl collect": ["--episodes", "2"],
    "robotrl train": ["--steps", "2", "--minutes", "0", "--batch-size", "8", "--eval-every", "0"],
    "robotrl distill": ["--steps", "2", "--batch-size", "8", "--eval-every", "0"],
    "robotrl eval": ["--episodes", "2", "--workers", "1"],
    "robotrl bench policy": ["--repeats", "2"],
    "robotrl deploy": ["--episodes", "1", "--no-status"],
    "robotrl finetune residual": [
        *("--envs", "2", "--rollout", "8", "--steps", "16", "--minibatch", "8"),
        *("--eval-episodes", "2", "--eval-every", "16", "--no-progress"),
    ],
    "robotrl hil train": ["--minutes", "0.05", "--eval-episodes", "2", "--demo-episodes", "2"],
}
BLOCK_TIMEOUT_S = 240  # one block; all of them take 1-2.5 min, by how busy the CPU is


def blocks(text: str) -> list[tuple[str, str, bool]]:
    """(language, code, runnable) of every fenced bash/python block, in order."""
    found = []
    pattern = re.compile(r"^```(bash|python)\n(.*?)^```", re.S | re.M)
    for match in pattern.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
        found.append((match.group(1), match.group(2), before == MARKER))
    return found


def command_lines(code: str) -> list[str]:
    """A bash block's logical lines (continuations joined), comments and blank lines dropped."""
    lines = []
    for line in code.replace("\\\n", " ").splitlines():
        tokens = shlex.split(line, comments=True)
        if tokens:
            lines.append(line)
    return lines


def with_budget(line: str) -> str:
    """`line` with the BUDGETS flags of its command appended (comments dropped)."""
    tokens = shlex.split(line, comments=True)
    keys = [k for k in BUDGETS if tokens[: len(k.split())] == k.split()]
    if not keys:
        return line
    return shlex.join(tokens + BUDGETS[max(keys, key=len)])


def test_blocks_find_the_marked_ones_and_budgets_override_the_figures():
    text = f"x\n\n{MARKER}\n```bash\nrobotrl eval --policy r --episodes 50  # note\n```\n"
    text += "\n```bash\nrobotrl deploy --env ros:ur5e\n```\n\n```python\nprint(1)\n```\n"
    found = blocks(text)
    assert [(lang, runnable) for lang, _, runnable in found] == [
        ("bash", True),
        ("bash", False),
        ("python", False),
    ]
    line = with_budget(command_lines(found[0][1])[0])
    assert line == "robotrl eval --policy r --episodes 50 --episodes 2 --workers 1"
    args = build_parser().parse_args(shlex.split(line)[1:])
    assert args.episodes == 2  # the appended value wins
    longest = with_budget("robotrl finetune residual --base b --steps 450000")
    assert build_parser().parse_args(shlex.split(longest)[1:]).steps == 16
    assert with_budget("robotrl tasks") == "robotrl tasks"


def test_readme_is_short_and_covers_every_journey():
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    runnable = [code for lang, code, ok in blocks(text) if ok]
    for command in ("robotrl train", "robotrl collect", "--cameras", "robotrl deploy",
                    "robotrl finetune residual", "robotrl hil train"):  # fmt: skip
        assert any(command in code for code in runnable), command
    assert "| **Lift from cameras**" in text  # the camera policy's measured line


def robotrl_commands(text: str) -> list[str]:
    """Every `robotrl ...` command in a document: the lines of its bash blocks and its inline
    code spans that start with `robotrl `."""
    found = [
        line
        for lang, code, _ in blocks(text)
        if lang == "bash"
        for line in command_lines(code)
        if shlex.split(line, comments=True)[0] == "robotrl"
    ]
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return found + re.findall(r"`(robotrl [^`]+)`", prose)


def test_every_robotrl_command_in_the_readme_and_hardware_guide_parses(capsys):
    parser = build_parser()
    commands = [
        c
        for doc in (README, ROOT / "docs" / "hardware.md")
        for c in robotrl_commands(doc.read_text())
    ]
    for command in commands:
        try:
            parser.parse_args(shlex.split(command, comments=True)[1:])
        except SystemExit as e:  # --help exits 0, a usage error 2
            if e.code != 0:
                pytest.fail(
                    f"a documented command does not parse: {command}\n{capsys.readouterr().err}"
                )
    assert len(commands) >= 30


def test_no_words_of_sessions_or_trackers_in_docs_and_code():
    # Built from pieces so that this file does not match itself.
    pattern = re.compile(
        "|".join(
            ["sess" + r"ions? [0-9]+", "this " + "session", "the " + r"bar\b", "our " + "tracker"]
        ),
        re.I,
    )
    offending = []
    files = subprocess.run(
        ["git", "ls-files", "*.md", "*.py"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in files:
        path = ROOT / name
        if not path.exists():
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if pattern.search(line):
                offending.append(f"{name}:{number}: {line.strip()[:80]}")
    assert not offending, "\n".join(offending)


@pytest.mark.xdist_group("readme")
def test_the_runnable_blocks_run(tmp_path):
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"),
        # One thread per command: next to another test worker, OpenMP threads spin-waiting
        # for a core take a 2-episode eval from seconds to minutes.
        "OMP_NUM_THREADS": "1",
    }
    runnable = [(lang, code) for lang, code, ok in blocks(README.read_text()) if ok]
    assert len(runnable) >= 6
    for lang, code in runnable:
        if lang == "python":
            argv, shown = [sys.executable, "-c", code], code
        else:
            script = "\n".join(with_budget(line) for line in command_lines(code))
            argv, shown = ["bash", "-euo", "pipefail", "-c", script], script
        start = time.monotonic()
        done = subprocess.run(
            argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S
        )
        took = time.monotonic() - start
        assert done.returncode == 0, (
            f"README block failed (exit {done.returncode}, {took:.0f} s):\n{shown}\n"
            f"--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
        )
        print(f"{took:5.1f} s  {shown.splitlines()[0][:70]}")
