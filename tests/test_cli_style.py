"""One help style for every command line: help on every argument, one "(default" per option, examples and
exit codes at the end, no RST markup, --version, and exit code 2 with one line for usage errors."""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mantis_data import __version__
from mantis_data._cli import EXIT_CODES, subparsers

ROOT = Path(__file__).resolve().parent.parent


def _parsers():
    from builders.__main__ import build_parser as builders_parser
    from mantis_data.cli import build_parser as cli_parser
    from training.train import build_parser as train_parser

    return {"mantis-data": cli_parser(), "python -m builders": builders_parser(), "python -m training.train": train_parser()}


PARSERS = _parsers()
ALL = [(prog, path, p) for prog, top in PARSERS.items() for path, p in subparsers(top)]


@pytest.mark.parametrize("prog,path,parser", ALL, ids=[f"{a}:{b or '-'}" for a, b, _ in ALL])
def test_every_parser_has_the_house_style(prog, path, parser):
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        assert action.help and action.help.strip(), f"{prog} {path}: {action.option_strings or action.dest} has no help"
    text = parser.format_help()
    for block in re.split(r"\n(?=  -)", text):  # one option's help per block
        assert block.count("(default") <= 1, f"{prog} {path}: doubled default in\n{block}"
    assert "``" not in text and ":class:" not in text and ":func:" not in text, f"{prog} {path}: RST markup"
    assert text.rstrip().endswith(EXIT_CODES), f"{prog} {path}: no exit codes at the end"
    if path:  # every subcommand ends with examples (the top level too, where the program has subcommands)
        assert "examples:\n" in text, f"{prog} {path}: no examples"


@pytest.mark.parametrize("prog,path,parser", ALL, ids=[f"{a}:{b or '-'}" for a, b, _ in ALL])
def test_unknown_option_exits_2_with_one_line(prog, path, parser, capsys):
    argv = [*path.split(), "--no-such-option"] if path else ["--no-such-option"]
    top = PARSERS[prog]
    with pytest.raises(SystemExit) as exc:
        top.parse_args(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "error:" in err


@pytest.mark.parametrize("prog", list(PARSERS))
def test_version(prog):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exc:
        PARSERS[prog].parse_args(["--version"])
    assert exc.value.code == 0 and __version__ in out.getvalue()


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["evaluate", "p.parquet", "--out", "o", "--bootstrap", "-5"], "--bootstrap: expected an integer >= 0, got '-5'"),
        (["evaluate", "p.parquet", "--out", "o", "--outlier-threshold", "0"], "--outlier-threshold: expected a number > 0"),
        (["evaluate", "p.parquet", "--out", "o", "--intervals", "x"], "--intervals: expected an integer >= 0"),
        (["training.train", "--data", "d", "--out", "o", "--epochs", "0"], "--epochs: expected an integer >= 1, got '0'"),
        (["training.train", "--data", "d", "--out", "o", "--workers", "-1"], "--workers: expected an integer >= 0"),
    ],
)
def test_invalid_arguments_exit_2_with_a_one_line_message(argv, needle):
    """Through the real entry point, as a user runs it: exit 2, one line on stderr, nothing run."""
    module = "mantis_data.cli"
    if argv[0] == "training.train":
        module, argv = argv[0], argv[1:]
    proc = subprocess.run([sys.executable, "-m", module, *argv], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and needle in proc.stderr, proc.stderr
    assert proc.stdout == ""


def test_make_loader_refuses_negative_workers(demo_release):
    from mantis_data.errors import MantisDataError
    from mantis_data.loading import make_loader

    with pytest.raises(MantisDataError, match="num_workers must be >= 0"):
        make_loader(demo_release, "train", num_workers=-1)
    assert make_loader(demo_release, "train", num_workers=0, batch_size=4) is not None
