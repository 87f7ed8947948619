"""One help style for every command line of the package (``mantis-data``, ``python -m builders``,
``python -m training.train``): plain-text help, one "(default: ...)" per option, examples and exit codes
at the end, ``--version``; and argument types that refuse invalid values with exit code 2."""

from __future__ import annotations

import argparse

EXIT_CODES = "exit codes: 0 ok, 1 a check failed (e.g. verify found a problem), 2 usage or input error"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs as written; "(default: X)" appended once, only where the help does not
    already say what the default is and the default means something (not None, False or empty)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or "%(default)" in text:
            return text
        d = action.default
        if d is None or d is False or d is argparse.SUPPRESS or (isinstance(d, (list, tuple)) and not d) or action.nargs == 0:
            return text
        if action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return f"{text} (default: %(default)s)"
        return text


def _version() -> str:
    from . import __version__

    return __version__


def style(parser: argparse.ArgumentParser, examples: dict[str, str] | None = None, version: bool = True) -> None:
    """Apply the house style to ``parser`` and every subcommand parser under it (recursively): the
    formatter, an epilog with the examples for that parser (``examples`` keyed by the subcommand path,
    "" for the top level, e.g. "evaluate") and the exit codes, and ``--version`` on the top level."""
    examples = examples or {}
    if version and not any("--version" in a.option_strings for a in parser._actions):
        parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}",
                            help="print the package version and exit")

    def walk(p: argparse.ArgumentParser, path: str) -> None:
        p.formatter_class = HelpFormatter
        p.error = _one_line_error(p)
        ex = examples.get(path)
        parts = [p.epilog] if p.epilog else []
        if ex:
            parts.append("examples:\n" + "\n".join(f"  {line}" for line in ex.strip().splitlines()))
        parts.append(EXIT_CODES)
        p.epilog = "\n\n".join(parts)
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    walk(child, f"{path} {name}".strip())

    walk(parser, "")


def _one_line_error(p: argparse.ArgumentParser):
    def error(message: str):
        p.exit(2, f"{p.prog}: error: {message} (see {p.prog} --help)\n")

    return error


def subparsers(parser: argparse.ArgumentParser):
    """The (name, parser) of every subcommand under ``parser``, recursively, the top level first."""
    out = [("", parser)]

    def walk(p, path):
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    out.append((f"{path} {name}".strip(), child))
                    walk(child, f"{path} {name}".strip())

    walk(parser, "")
    return out


def _number(kind, text: str, ok, what: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _number(int, text, lambda v: v >= 1, "an integer >= 1")


def nonnegative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _number(int, text, lambda v: v >= 0, "an integer >= 0")


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    return _number(float, text, lambda v: v > 0 and v != float("inf"), "a number > 0")


def nonnegative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    return _number(float, text, lambda v: v >= 0 and v != float("inf"), "a number >= 0")
