"""The CLI reference, generated from the argparse parsers: `python -m robotrl.cli.reference`.

`docs/cli.md` is this module's output; `tests/test_cli_reference.py` fails when the two differ,
so the reference cannot drift from the parsers (which `robotrl.cli.config` builds from the
config dataclasses). One section per command, one table row per option: its flags, what it
takes, its default and its help text.
"""

from __future__ import annotations

import argparse
import sys

HEADER = """# CLI reference

Generated from the argparse parsers by `python -m robotrl.cli.reference > docs/cli.md`; do not
edit by hand (`tests/test_cli_reference.py` fails when this file is out of date). `robotrl
COMMAND --help` prints the same on a terminal.
"""


def commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], str, argparse.ArgumentParser]]:
    """Every command under `parser`, depth first in the order they were added, as
    (words after `robotrl`, one-line help, its parser). Groups (`bench`, `dataset`, ...) come
    before their subcommands."""
    found = []
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
        for name, sub in action.choices.items():
            words = (*path, name)
            found.append((words, helps.get(name, ""), sub))
            found += commands(sub, words)
    return found


def _takes(action: argparse.Action) -> str:
    """What follows the flag: its choices, or the kind of value (nothing for a switch)."""
    if action.choices is not None:
        return "{" + ",".join(str(c) for c in action.choices) + "}"
    if action.nargs == 0:
        return ""
    kind = {int: "int", float: "float"}.get(action.type, "text")
    return f"{kind} ..." if action.nargs in ("*", "+") else kind


def _flags(action: argparse.Action) -> str:
    if isinstance(action, argparse.BooleanOptionalAction):
        return " / ".join(action.option_strings)
    if not action.option_strings:
        return action.dest
    return ", ".join(action.option_strings)


def _help(action: argparse.Action) -> str:
    """The help text without the ` (default: X)` that `add_config_args` appends (the default
    has its own column), with argparse's `%%` unescaped."""
    text = action.help or ""
    suffix = f" (default: {action.default})"
    if text.endswith(suffix):
        text = text[: -len(suffix)]
    return text.replace("%%", "%")


def _default(action: argparse.Action) -> str:
    if not action.option_strings:
        return "required" if action.nargs not in ("*", "?") else ""
    if action.required:
        return "required"
    if action.default is None or action.default == argparse.SUPPRESS:
        return ""
    if action.default == "":
        return "''"
    return str(action.default)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    return f"`{text}`" if text else ""


def section(words: tuple[str, ...], summary: str, parser: argparse.ArgumentParser) -> str:
    lines = [f"## `robotrl {' '.join(words)}`", ""]
    if summary:
        lines += [summary[0].upper() + summary[1:] + ("" if summary.endswith(".") else "."), ""]
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if subs:
        names = ", ".join(f"`{name}`" for sub in subs for name in sub.choices)
        lines += [f"Subcommands: {names}.", ""]
        return "\n".join(lines)
    rows = [
        a
        for a in parser._actions
        if not isinstance(a, argparse._HelpAction | argparse._SubParsersAction)
    ]
    if not rows:
        return "\n".join(lines + ["No options.", ""])
    lines += ["| option | takes | default | what it does |", "|---|---|---|---|"]
    for a in rows:
        cells = (_code(_flags(a)), _code(_takes(a)), _code(_default(a)), _help(a))
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines + [""])


def render(parser: argparse.ArgumentParser | None = None) -> str:
    """The whole reference as Markdown: a table of contents, then one section per command."""
    if parser is None:
        from robotrl.cli.main import build_parser

        parser = build_parser()
    found = commands(parser)
    toc = [
        f"- [`robotrl {' '.join(words)}`](#robotrl-{'-'.join(words)}): {summary}"
        for words, summary, _ in found
    ]
    parts = [HEADER, *toc, ""]
    parts += [section(words, summary, sub) for words, summary, sub in found]
    return "\n".join(parts).rstrip("\n") + "\n"


def main() -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
