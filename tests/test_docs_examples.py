"""Every example command in README.md and docs/*.md is checked, so a doc example cannot silently drift.

Commands are found by shape, not by a list: lines starting with ``$ `` in any fenced block (a trailing
``\\`` continues them), and every line of ```sh/```bash/```shell blocks that have no ``$ `` prompts. One
test per command, with the file and line in its id. Each piece of a command line (split at ``&&``,
``||``, ``|``, ``;``) is checked by its program:

* ``burstbench ...``: the subcommand exists and its own argparse parser accepts the arguments (parsed
  in-process, nothing run: ``burstbench.cli_reference.parse_only``); the quick ones that need no server
  (QUICK_RUNS) are also run for real, in a temporary folder.
* ``make TARGET ...``: ``make -n`` succeeds and prints a ``burstbench`` command (except MAKE_WITHOUT_BURSTBENCH),
  and every ``burstbench`` command it prints parses as above.
* ``locust -f FILE ...``: FILE exists (``$(burstbench locustfile NAME)`` substituted) and Locust's parser,
  with that locustfile's flags added (its init_command_line_parser listeners), accepts the arguments.
* anything else must be in NOT_RUN, with the reason; an unknown program fails.

Placeholders: ``<...>`` becomes a word (``results/<run>`` parses as a path; nothing that needs a real run
is run), ``[...]`` optional parts are included, a lone ``...`` is dropped. docs/cli.md is generated
(``make docs-cli``) and compared instead.
"""
from __future__ import annotations

import dataclasses
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT

DOC_FILES = ["README.md", "docs/*.md"]
GENERATED = {"docs/cli.md"}
SCRIPT_LANGS = {"sh", "bash", "shell", "zsh"}  # every line a command (when the block has no `$ ` prompts)
OPERATORS = {"&&", "||", "|", ";", "&"}

# Programs the docs show but this test does not run, and why.
NOT_RUN = {
    "bentoml": "builds a Bento (bento builds are tested in tests/test_deploy.py) or needs Docker (containerize)",
    "docker": "needs a Docker daemon",
    "kubectl": "needs a Kubernetes cluster",
    "sudo": "root on a cluster node (k3s ctr images import)",
    "pip": "installs packages",
    "curl": "needs a running service",
}
# make targets whose recipe legitimately runs no burstbench command.
MAKE_WITHOUT_BURSTBENCH = {
    "test": "runs pytest", "test-fast": "runs pytest", "bento": "runs bentoml build", "install": "pip",
    "browser": "installs chromium", "nginx": "installs nginx", "tcpdump": "installs tcpdump", "clean": "rm",
    "docs-cli": "runs burstbench.cli_reference", "gpu-check": "runs bash experiments/gpu_check.sh (it installs first)",
}
# burstbench commands quick enough (seconds) and needing no server or run folder: also run for real.
QUICK_RUNS = {("locustfile",), ("paper-gaps",), ("superposition",), ("resilience", "plans"), ("resilience", "plan")}
TOP_LEVEL = {"--help", "-h", "--version", "help-all"}
# Files the docs ask the reader to write, made from the docs themselves.
README_LOCUSTFILE_MARKER = "# burstbench example: your own locustfile"


@dataclasses.dataclass(frozen=True)
class Example:
    path: str  # relative to the repository
    line: int
    text: str  # the command as written (continuations joined), without the prompt

    @property
    def id(self) -> str:
        words = self.text.split()
        short = " ".join(words[:3]) + (" ..." if len(words) > 3 else "")
        return f"{self.path}:{self.line}: {short}"


FENCE = re.compile(r"^(?P<fence>```+|~~~+)(?P<info>[^\n]*)\n(?P<body>.*?)^(?P=fence)[ \t]*$", re.S | re.M)


def doc_paths() -> list[Path]:
    found = []
    for pattern in DOC_FILES:
        found += sorted(REPO_ROOT.glob(pattern))
    return [p for p in found if p.relative_to(REPO_ROOT).as_posix() not in GENERATED]


def _joined(lines: list[str], start: int) -> tuple[str, int]:
    """The command starting at lines[start], with backslash continuations; and the index after it."""
    parts, i = [lines[start]], start
    while parts[-1].rstrip().endswith("\\") and i + 1 < len(lines):
        parts[-1] = parts[-1].rstrip()[:-1]
        i += 1
        parts.append(lines[i])
    return " ".join(p.strip() for p in parts), i + 1


def examples_in(path: Path) -> list[Example]:
    text = path.read_text(encoding="utf-8")
    rel = path.relative_to(REPO_ROOT).as_posix()
    found = []
    for block in FENCE.finditer(text):
        first_line = text[:block.start("body")].count("\n") + 1
        lang = (block.group("info").split() or [""])[0].lower()
        lines = block.group("body").splitlines()
        prompts = any(line.startswith("$ ") for line in lines)
        i = 0
        while i < len(lines):
            line = lines[i]
            if prompts and line.startswith("$ "):
                command, after = _joined([line[2:], *lines[i + 1:]], 0)
                found.append(Example(rel, first_line + i, command))
                i += after
            elif not prompts and lang in SCRIPT_LANGS and line.strip() and not line.lstrip().startswith("#"):
                command, i_next = _joined(lines, i)
                found.append(Example(rel, first_line + i, command.strip()))
                i = i_next
            else:
                i += 1
    return found


def all_examples() -> list[Example]:
    return [e for path in doc_paths() for e in examples_in(path)]


# ------------------------------------------------------------------------------ from a doc line to argv pieces
def locustfile_substituted(text: str) -> str:
    from burstbench.cli import locustfile_path

    return re.sub(r"\$\(\s*(?:\S*/)?burstbench\s+locustfile\s+([\w-]+)\s*\)",
                  lambda m: shlex.quote(locustfile_path(m.group(1))), text)


def pieces(text: str) -> list[list[str]]:
    """The command line's simple commands (argv lists), placeholders and optional brackets resolved."""
    text = locustfile_substituted(text)
    text = re.sub(r"<[^<>\s][^<>\n]*?>", lambda m: re.sub(r"\W+", "_", m.group(0)).strip("_") or "x", text)
    text = re.sub(r"(^|\s)\[", r"\1", text)
    text = re.sub(r"\](?=\s|$)", "", text)
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    result, current = [], []
    for token in lexer:
        if token in OPERATORS:
            if current:
                result.append(current)
            current = []
        elif token != "...":
            current.append(token)
    if current:
        result.append(current)
    # Leading VAR=value assignments are the environment, not the program.
    return [argv[next((i for i, a in enumerate(argv) if not re.match(r"^[A-Za-z_]\w*=", a)), len(argv)):]
            for argv in result]


def program(argv: list[str]) -> str:
    return Path(argv[0]).name if argv else ""


# ------------------------------------------------------------------------------ checks, one per program
def check_burstbench(args: list[str], where: str) -> None:
    from burstbench import cli
    from burstbench.cli_reference import parse_only

    if not args or args[0] in TOP_LEVEL:
        assert not args or len(args) == 1, f"{where}: burstbench {' '.join(args)}: extra arguments"
        return
    check_subcommand(args, where)
    name, rest = args[0], args[1:]
    parsed = parse_only(name, rest)
    assert parsed.ok, (f"{where}: `burstbench {' '.join(args)}` is refused by its parser (exit {parsed.code}):\n"
                       f"{parsed.stderr.strip()[-1500:]}")


def check_subcommand(args: list[str], where: str) -> None:
    from burstbench import cli

    assert args and (args[0] in cli.COMMANDS or args[0] in TOP_LEVEL), (
        f"{where}: `burstbench {' '.join(args)}` is not a subcommand (burstbench --help lists {', '.join(cli.COMMANDS)})")


def is_quick(args: list[str]) -> bool:
    return any(tuple(args[:len(q)]) == q for q in QUICK_RUNS) and "--help" not in args


def run_burstbench_for_real(args: list[str], cwd: Path, where: str) -> None:
    out = subprocess.run([sys.executable, "-m", "burstbench.cli", *args], cwd=cwd, capture_output=True, text=True,
                         timeout=180)
    assert out.returncode == 0, f"{where}: `burstbench {' '.join(args)}` exited {out.returncode}:\n{out.stderr[-2000:]}"


def burstbench_commands_in_dry_run(stdout: str) -> list[list[str] | str]:
    """The burstbench commands `make -n` printed: argv lists, or the raw text where the shell fills in `$`."""
    found = []
    for line in stdout.replace("\\\n", " ").splitlines():
        for segment in re.split(r"&&|\|\||;|\|", line):
            words = segment.split()
            starts = [i for i, w in enumerate(words) if Path(w).name == "burstbench"]
            if not starts:
                continue
            rest = " ".join(words[starts[0]:])
            found.append(rest if "$" in rest else shlex.split(rest))
    return found


def check_make(args: list[str], where: str) -> None:
    targets = [a for a in args if not a.startswith("-") and "=" not in a]
    assert targets, f"{where}: make without a target"
    dry = subprocess.run(["make", "-n", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert dry.returncode == 0, f"{where}: `make -n {' '.join(args)}` failed:\n{dry.stdout[-1000:]}{dry.stderr[-1500:]}"
    commands = burstbench_commands_in_dry_run(dry.stdout)
    if not set(targets) <= set(MAKE_WITHOUT_BURSTBENCH):
        assert commands, f"{where}: `make -n {' '.join(args)}` runs no burstbench command:\n{dry.stdout[-1500:]}"
    for command in commands:
        if isinstance(command, str):  # the shell fills in variables ($runs, $$v): the subcommand must exist
            check_subcommand(command.split()[1:2], f"{where} (make -n: {command[:80]})")
        else:
            check_burstbench(command[1:], f"{where} (make -n: {' '.join(command)[:120]})")


LOCUST_PARSE = """\
import sys
import locust  # noqa: F401 (gevent first)
from locust.argument_parser import get_parser
from locust.util.load_locustfile import load_locustfile
locustfile, args = sys.argv[1], sys.argv[2:]
load_locustfile(locustfile)  # its init_command_line_parser listeners: burstbench's flags
get_parser(default_config_files=[]).parse_args(args)
print("parsed")
"""


def readme_locustfile(folder: Path) -> Path:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"^```python\n(.*?)^```", readme, flags=re.S | re.M)
              if b.startswith(README_LOCUSTFILE_MARKER)]
    assert blocks, f"README.md has no ```python block starting with {README_LOCUSTFILE_MARKER!r}"
    path = folder / "my_locustfile.py"
    path.write_text(blocks[0], encoding="utf-8")
    return path


# Files a doc's locust command names that the reader writes: how the test makes them.
USER_LOCUSTFILES = {"my_locustfile.py": readme_locustfile}


def check_locust(args: list[str], where: str, tmp_path: Path) -> None:
    names = [args[i + 1] for i, a in enumerate(args[:-1]) if a in ("-f", "--locustfile")]
    names += [a.split("=", 1)[1] for a in args if a.startswith("--locustfile=")]
    assert len(names) == 1, f"{where}: expected one -f LOCUSTFILE, found {names}"
    name = names[0]
    path = Path(name) if Path(name).is_absolute() else REPO_ROOT / name
    if not path.is_file() and name in USER_LOCUSTFILES:
        path = USER_LOCUSTFILES[name](tmp_path)
    assert path.is_file(), f"{where}: locustfile {name} does not exist"
    argv = [str(path) if a == name else a for a in args]
    out = subprocess.run([sys.executable, "-c", LOCUST_PARSE, str(path), *argv], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and "parsed" in out.stdout, (
        f"{where}: Locust refuses `locust {' '.join(args)}` (exit {out.returncode}):\n{out.stderr[-2000:]}")


def kind_of_example(example: Example) -> str:
    """unit when every piece is checked in this process, integration when one starts a process."""
    try:
        argvs = pieces(example.text)
    except ValueError:  # unbalanced quotes: the test says so, in-process
        return "unit"
    for argv in argvs:
        if program(argv) in ("make", "locust") or (program(argv) == "burstbench" and is_quick(argv[1:])):
            return "integration"
    return "unit"


def example_params():
    return [pytest.param(e, id=e.id, marks=getattr(pytest.mark, kind_of_example(e))) for e in all_examples()]


@pytest.mark.parametrize("example", example_params())
def test_doc_command(example: Example, tmp_path):
    where = f"{example.path}:{example.line}"
    try:
        argvs = pieces(example.text)
    except ValueError as err:
        pytest.fail(f"{where}: cannot split `{example.text}` like a shell: {err}")
    assert argvs, f"{where}: empty command"
    skipped = []
    for argv in argvs:
        prog = program(argv)
        if prog == "burstbench":
            check_burstbench(argv[1:], where)
            if is_quick(argv[1:]):
                run_burstbench_for_real(argv[1:], tmp_path, where)
        elif prog == "make":
            check_make(argv[1:], where)
        elif prog == "locust":
            check_locust(argv[1:], where, tmp_path)
        elif prog in NOT_RUN:
            skipped.append(f"{prog}: {NOT_RUN[prog]}")
        else:
            pytest.fail(f"{where}: `{' '.join(argv)}`: {prog!r} is not a command this test knows. Doc examples "
                        f"use burstbench, make or locust (or a NOT_RUN program in tests/test_docs_examples.py)"
                        + ("; `python -m burstbench...` is now `burstbench ...`" if prog.startswith("python") and argv[1:2] == ["-m"]
                           else ""))
    if skipped and len(skipped) == len(argvs):
        pytest.skip(f"not run: {'; '.join(skipped)}")


# ------------------------------------------------------------------------------ the collection itself
def test_the_docs_have_example_commands_of_every_kind():
    """If the collector broke (a fence style, a prompt), the per-command tests would silently vanish."""
    examples = all_examples()
    programs = {program(argv) for e in examples for argv in pieces(e.text)}
    assert len(examples) >= 20, [e.id for e in examples]
    assert {"burstbench", "make", "locust"} <= programs, programs


def test_collector_reads_prompts_continuations_scripts_and_placeholders(tmp_path, monkeypatch):
    doc = tmp_path / "docs" / "x.md"
    doc.parent.mkdir()
    doc.write_text("text\n\n```console\n$ burstbench report results/<run>   # a comment\nsome output\n"
                   "$ make compare RUNS=\"results/<a> results/<b>\" [BASELINE=results/<a>]\n"
                   "$ locust -f \"$(burstbench locustfile http)\" --headless \\\n    --host http://h:1 ...\n```\n\n"
                   "```bash\n# a comment\nbentoml build . && kubectl apply -k x\n```\n\n"
                   "```python\n$ not a command\n```\n", encoding="utf-8")
    monkeypatch.setattr(sys.modules[__name__], "REPO_ROOT", tmp_path)
    found = examples_in(doc)
    assert [(e.line, e.text.split()[0]) for e in found] == [(4, "burstbench"), (6, "make"), (7, "locust"),
                                                             (13, "bentoml"), (17, "not")]
    assert pieces(found[0].text) == [["burstbench", "report", "results/run"]]
    assert pieces(found[1].text) == [["make", "compare", "RUNS=results/a results/b", "BASELINE=results/a"]]
    locust = pieces(found[2].text)[0]
    assert Path(locust[2]).name == "http_endpoint.py" and locust[-2:] == ["--host", "http://h:1"]
    assert [p[0] for p in pieces(found[3].text)] == ["bentoml", "kubectl"]


def test_parse_only_refuses_what_the_real_command_refuses():
    from burstbench.cli_reference import parse_only

    had_locust = "locust" in sys.modules
    assert parse_only("compare", ["results/a", "results/b"]).ok
    assert parse_only("summary", ["--no-such-flag"]).code == 2
    assert parse_only("no-such-command", []).code == 2
    assert had_locust or "locust" not in sys.modules  # no Locust import (it would monkey-patch this process)


# ------------------------------------------------------------------------------ docs/cli.md, generated
def test_cli_reference_is_up_to_date():
    from burstbench.cli_reference import reference

    path = REPO_ROOT / "docs" / "cli.md"
    written = path.read_text(encoding="utf-8") if path.is_file() else ""
    if written != reference():
        pytest.fail("docs/cli.md is out of date with the subcommands' parsers: run `make docs-cli` "
                    "(python -m burstbench.cli_reference --write docs/cli.md) and commit the result")


def test_cli_reference_has_every_subcommand_and_its_example():
    from burstbench import cli

    text = (REPO_ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert "make docs-cli" in text.split("## ", 1)[0]  # the header says how to regenerate it
    for name, cmd in cli.COMMANDS.items():
        assert f"\n## burstbench {name}\n" in text, name
        assert cmd.example.splitlines()[0] in text, name


# -- ```python blocks in docs/ run as written (the README's own-locustfile one: test_readme_example.py) --------------
def python_blocks():
    for page in sorted((REPO_ROOT / "docs").glob("*.md")):
        text = page.read_text(encoding="utf-8")
        for match in re.finditer(r"^```python\n(.*?)^```", text, flags=re.S | re.M):
            line = text[: match.start()].count("\n") + 1
            yield pytest.param(match.group(1), id=f"{page.relative_to(REPO_ROOT)}:{line}")


@pytest.mark.integration
@pytest.mark.parametrize("code", list(python_blocks()))
def test_doc_python_block_runs(code, tmp_path):
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
