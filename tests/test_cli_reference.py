"""docs/cli.md is generated from the argparse parsers and must match them: the reference cannot
drift from the CLI."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from robotrl.cli.config import add_config_args
from robotrl.cli.main import build_parser
from robotrl.cli.reference import commands, render, section
from robotrl.collect import CollectConfig

DOC = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
REGENERATE = "regenerate it: python -m robotrl.cli.reference > docs/cli.md"


def test_docs_cli_md_is_the_generated_reference():
    assert DOC.exists(), f"docs/cli.md is missing; {REGENERATE}"
    assert DOC.read_text() == render(), f"docs/cli.md is out of date; {REGENERATE}"


def test_every_command_and_option_of_the_parser_is_in_the_reference():
    text = render()
    found = commands(build_parser())
    names = {" ".join(words) for words, _, _ in found}
    assert {"train", "deploy", "collect", "eval", "finetune residual", "hil train"} <= names
    for words, _, parser in found:
        body = text.split(f"## `robotrl {' '.join(words)}`\n", 1)
        assert len(body) == 2, f"no section for robotrl {' '.join(words)}"
        own = body[1].split("\n## ", 1)[0]
        for action in parser._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert f"`{flag}" in own or f" {flag}`" in own, (words, flag)


def test_a_config_field_becomes_a_row_with_its_type_default_and_help():
    parser = argparse.ArgumentParser(prog="x")
    add_config_args(parser, CollectConfig)
    table = section(("collect",), "record demonstrations", parser)
    assert table.startswith("## `robotrl collect`\n\nRecord demonstrations.\n")
    rows = {line.split("`")[1].split(" ")[0]: line for line in table.splitlines()[6:]}
    # the ` (default: X)` that add_config_args appends to the help moves to its own column
    assert rows["--episodes"] == "| `--episodes` | `int` | `10` | episodes to save |"
    assert "(default:" not in rows["--teleop"].rsplit("|", 2)[-2]
    assert re.fullmatch(r"\| `--keep-failures / --no-keep-failures` \|  \| `False` \| .+ \|",
                        rows["--keep-failures"])  # fmt: skip


def test_choices_positionals_and_pipes_are_rendered_safely():
    parser = argparse.ArgumentParser(prog="x")
    parser.add_argument("root", help="a dataset")
    parser.add_argument("--mode", choices=("a", "b"), default="a", help="a|b")
    parser.add_argument("--out", required=True)
    table = section(("x",), "", parser)
    assert "| `root` | `text` | `required` | a dataset |" in table
    assert "| `--mode` | `{a,b}` | `a` | a\\|b |" in table  # a pipe would split the row
    assert "| `--out` | `text` | `required` |  |" in table
