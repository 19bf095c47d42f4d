"""The ``burstbench`` command itself: the overview, every subcommand's --help, unknown commands, locustfile.

Most checks call ``burstbench.cli.main`` in this process (unit); the last ones run the installed
console script as a user does (integration).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from burstbench import cli
from conftest import REPO_ROOT


def run_main(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = cli.main(list(argv))
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 2)
    out, err = capsys.readouterr()
    return code, out, err


def test_help_lists_every_subcommand(capsys):
    code, out, _ = run_main(capsys, "--help")
    assert code == 0
    listed = {line.split()[0] for line in out.splitlines() if line.startswith("  ") and line.split()}
    assert set(cli.COMMANDS) <= listed, f"missing from burstbench --help: {sorted(set(cli.COMMANDS) - listed)}"


def test_no_arguments_prints_the_overview_and_exits_2(capsys):
    code, out, _ = run_main(capsys)
    assert code == 2 and "usage: burstbench COMMAND" in out


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_every_subcommand_help_exits_0_and_ends_with_an_example(command, capsys):
    code, out, err = run_main(capsys, command, "--help")
    assert code == 0, err[-2000:]
    assert f"usage: burstbench {command}" in out, out[:500]
    tail = out.rstrip().splitlines()
    # The last block is "example:" and the command's example lines (cli.COMMANDS[...].example).
    assert "example:" in tail, f"burstbench {command} --help does not end with an example:\n{out[-800:]}"
    example = tail[tail.index("example:") + 1:]
    assert example and all(line.startswith("  ") for line in example), out[-800:]
    assert example[0].split()[0] in ("burstbench", "locust"), example
    if example[0].split()[0] == "burstbench":
        assert example[0].split()[1] == command, example


def test_unknown_subcommand_exits_2_with_one_line(capsys):
    code, out, err = run_main(capsys, "no-such-command", "--flag")
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "no-such-command" in lines[0] and "burstbench --help" in lines[0], err


def test_version(capsys):
    from burstbench import __version__

    code, out, _ = run_main(capsys, "--version")
    assert code == 0 and out.strip() == f"burstbench {__version__}"


@pytest.mark.parametrize("name", list(cli.SHIPPED_LOCUSTFILES))
def test_locustfile_prints_an_existing_path(name, capsys):
    code, out, _ = run_main(capsys, "locustfile", name)
    assert code == 0
    path = Path(out.strip())
    assert path.is_absolute() and path.is_file() and path.name == cli.SHIPPED_LOCUSTFILES[name], out


def test_unknown_locustfile_is_a_usage_error(capsys):
    code, _, err = run_main(capsys, "locustfile", "nope")
    assert code == 2 and "invalid choice" in err


# ------------------------------------------------------------------------------ the installed console script
def burstbench_executable() -> str:
    found = Path(sys.executable).parent / "burstbench"
    return str(found) if found.is_file() else (shutil.which("burstbench") or "")


def run_burstbench(*argv: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    exe = burstbench_executable()
    if not exe:
        pytest.skip("the burstbench console script is not installed (pip install -e .)")
    return subprocess.run([exe, *argv], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "100"})


@pytest.mark.integration
def test_installed_command_help_lists_every_subcommand():
    out = run_burstbench("--help")
    assert out.returncode == 0, out.stderr
    for name in cli.COMMANDS:
        assert f"  {name} " in out.stdout, name


@pytest.mark.integration
def test_installed_command_unknown_subcommand_exits_2_with_one_line():
    out = run_burstbench("no-such-command")
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


@pytest.mark.integration
def test_installed_command_locustfile_http_prints_an_existing_path(tmp_path):
    out = run_burstbench("locustfile", "http", cwd=tmp_path)  # not relative to the checkout
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()).is_file(), out.stdout
