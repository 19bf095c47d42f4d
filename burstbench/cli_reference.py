"""docs/cli.md, the command reference, generated from the subcommands' own argument parsers.

    python -m burstbench.cli_reference                      # the Markdown, on stdout
    python -m burstbench.cli_reference --write docs/cli.md  # what `make docs-cli` runs

Also the parse-only helpers the doc-example tests use: :func:`parse_only` runs a subcommand's ``main``
until its argument parser has accepted (or refused) the arguments, and stops there, so nothing runs.
Help is formatted at a fixed width (``COLUMNS``) so the output does not depend on the terminal.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from . import cli

COLUMNS = 100
HEADER = """\
# burstbench command reference

<!-- Generated from the subcommands' argument parsers by burstbench/cli_reference.py: do not edit by hand.
     Regenerate with `make docs-cli` (python -m burstbench.cli_reference --write docs/cli.md);
     tests/test_docs_examples.py fails when this file is out of date. -->

Generated from the argument parsers (`burstbench help-all` prints the same help); regenerate it with
`make docs-cli` after changing a subcommand or a flag. `burstbench COMMAND --help` prints one of these.
"""


class _Stop(Exception):
    """Raised instead of running the subcommand, once its outermost parser is done."""

    def __init__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace | None, extras: list[str]):
        super().__init__(parser.prog)
        self.parser, self.namespace, self.extras = parser, namespace, extras


@contextlib.contextmanager
def _stop_at_parsing(parse_first: bool):
    """Patch argparse: the outermost parse_args/parse_known_args raises _Stop (after parsing when ``parse_first``)."""
    original_known = argparse.ArgumentParser.parse_known_args
    original_args = argparse.ArgumentParser.parse_args
    depth = 0

    def patched(strict: bool):
        def parse(self, args=None, namespace=None):
            nonlocal depth
            if depth == 0 and not parse_first:
                raise _Stop(self, None, [])
            depth += 1
            try:
                namespace, extras = original_known(self, args, namespace)
            finally:
                depth -= 1
            if strict and extras:
                self.error(f"unrecognized arguments: {' '.join(extras)}")
            if depth == 0:
                raise _Stop(self, namespace, [] if strict else extras)
            return namespace if strict else (namespace, extras)
        return parse

    argparse.ArgumentParser.parse_known_args = patched(strict=False)
    argparse.ArgumentParser.parse_args = patched(strict=True)
    try:
        yield
    finally:
        argparse.ArgumentParser.parse_known_args = original_known
        argparse.ArgumentParser.parse_args = original_args


@contextlib.contextmanager
def fixed_width(columns: int = COLUMNS):
    """argparse wraps at $COLUMNS (shutil.get_terminal_size): fix it while help is formatted."""
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(columns)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = saved


@dataclass
class Parsed:
    """What a subcommand's parser made of ``argv``: ok, or the exit code and argparse's message."""
    command: str
    argv: list[str]
    code: int = 0
    namespace: argparse.Namespace | None = None
    extras: list[str] = field(default_factory=list)  # parse_known_args's leftovers (forwarded, e.g. to Locust)
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.code == 0


def parse_only(command: str, argv: list[str]) -> Parsed:
    """Parse ``burstbench COMMAND ARGV`` with the subcommand's own parser, running nothing after it.

    ``--help`` counts as accepted (exit 0). An unknown COMMAND is code 2, as the real command exits.
    """
    if command not in cli.COMMANDS:
        return Parsed(command, argv, 2, stderr=f"unknown command {command!r}; choose one of {', '.join(cli.COMMANDS)}")
    out, err = io.StringIO(), io.StringIO()
    result = Parsed(command, list(argv))
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), fixed_width():
        try:
            with _stop_at_parsing(parse_first=True):
                rc = cli.dispatch(command, list(argv))
            # A main that returns without parsing (or parses by hand): its exit code is the verdict.
            result.code = int(rc or 0)
        except _Stop as stop:
            result.namespace, result.extras = stop.namespace, stop.extras
        except SystemExit as done:
            result.code = done.code if isinstance(done.code, int) else (0 if done.code is None else 2)
        except ValueError as error:  # what cli.main turns into exit 2
            result.code, result.stderr = 2, str(error)
    result.stdout, result.stderr = out.getvalue(), (result.stderr or err.getvalue())
    return result


def parser_of(command: str) -> argparse.ArgumentParser | None:
    """The subcommand's outermost argument parser, as its main builds it (None: it has no argparse parser)."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            with _stop_at_parsing(parse_first=False):
                cli.dispatch(command, [])
        except _Stop as stop:
            return stop.parser
        except (SystemExit, Exception):  # noqa: BLE001 (a main that does something else first)
            return None
    return None


def nested_commands(parser: argparse.ArgumentParser | None) -> dict[str, argparse.ArgumentParser]:
    """A parser's sub-subcommands (``burstbench resilience plan``, ...), by name."""
    if parser is None:
        return {}
    found = {}
    for action in parser._actions:  # noqa: SLF001 (argparse keeps them nowhere public)
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            found.update(action.choices)
    return found


def command_help(command: str) -> str:
    """``burstbench COMMAND --help``, exactly as printed (the example included)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()), fixed_width():
        try:
            cli.dispatch(command, ["--help"])
        except SystemExit:
            pass
    return _tidy(out.getvalue())


def _tidy(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


def _anchor(title: str) -> str:
    return "".join(c for c in title.lower().replace(" ", "-") if c.isalnum() or c in "-_")


def _block(text: str) -> str:
    return f"```text\n{text}\n```\n"


def reference() -> str:
    """docs/cli.md: the overview, then every subcommand's --help (and its sub-subcommands'), in cli's order."""
    with fixed_width():
        parts = [HEADER, "## Commands\n"]
        for group, title in cli.GROUPS.items():
            parts.append(f"{title[0].upper()}{title[1:]}:\n")
            parts += [f"- [`burstbench {name}`](#{_anchor('burstbench ' + name)}): {cmd.summary}"
                      for name, cmd in cli.COMMANDS.items() if cmd.group == group]
            parts.append("")
        parts += ["## burstbench --help\n", _block(_tidy(cli.overview()))]
        for name, cmd in cli.COMMANDS.items():
            parts += [f"## burstbench {name}\n", f"{cmd.summary[0].upper()}{cmd.summary[1:]}.\n",
                      _block(command_help(name))]
            nested = {} if cmd.prefix else nested_commands(parser_of(name))  # a prefix: one of a module's jobs
            for sub, parser in nested.items():
                parts += [f"### burstbench {name} {sub}\n", _block(_tidy(parser.format_help()))]
    return "\n".join(parts).rstrip("\n") + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m burstbench.cli_reference", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--write", type=Path, default=None, help="write the Markdown here (docs/cli.md) instead of stdout")
    args = p.parse_args(argv)
    text = reference()
    if args.write is None:
        sys.stdout.write(text)
    else:
        args.write.write_text(text, encoding="utf-8")
        print(f"wrote {args.write} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
