"""Generate argparse options from a typed config dataclass, and build the dataclass back; the
CLI's parser class and how it words an OS error (one line each)."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing

EXPERIMENTAL = "experimental (measured effects in docs/results.md; may change or go)"


def add_config_args(parser: argparse.ArgumentParser, config_cls: type) -> None:
    """One `--field-name` option per dataclass field; its help is the field's `help` metadata.
    Fields with `experimental` metadata are listed in a group of their own."""
    hints = typing.get_type_hints(config_cls)
    experimental = None
    main_parser = parser
    for field in dataclasses.fields(config_cls):
        parser = main_parser
        if field.metadata.get("experimental"):
            experimental = experimental or main_parser.add_argument_group(EXPERIMENTAL)
            parser = experimental
        kind = _scalar_type(hints[field.name])
        flag = "--" + field.name.replace("_", "-")
        help_text = field.metadata.get("help", "")
        default = field.default
        if kind is bool:
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=default, help=help_text
            )
        else:
            parser.add_argument(
                flag,
                type=kind,
                default=default,
                dest=field.name,
                choices=field.metadata.get("choices"),
                help=f"{help_text} (default: {default})",
            )


def config_from_args(config_cls: type, args: argparse.Namespace):
    names = {f.name for f in dataclasses.fields(config_cls)}
    return config_cls(**{k: v for k, v in vars(args).items() if k in names})


def _scalar_type(hint) -> type:
    """`int`, `str | None` -> the scalar type argparse should parse."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0]
    return hint


class Parser(argparse.ArgumentParser):
    """argparse with its usage errors in one line (the usage is one `--help` away); its
    subcommands' parsers are of this class too."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def os_error(e: OSError) -> str:
    """An `OSError` as one line: what went wrong and the path(s)."""
    text = e.strerror or str(e).splitlines()[0]
    if e.filename is not None:
        text += f": {e.filename}"
    if e.filename2 is not None:
        text += f" -> {e.filename2}"
    return text
