"""argparse pieces every ``node-dada`` command shares: a parser whose errors are one
line and exit code 2, and argument types that say what they expected."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from typing import Any, NoReturn

__all__ = [
    "OneLineParser",
    "UsageError",
    "growth_float",
    "non_negative_int",
    "number_arg",
    "positive_float",
    "positive_int",
    "report_error",
]


class UsageError(Exception):
    """A bad command-line argument (reported as one line, exit code 2)."""


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad argument as one line (exit code 2 from ``main``)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def report_error(prog: str, error: BaseException) -> int:
    """Write ``error`` as one line on stderr; return the exit code 2."""
    message = str(error).splitlines()[0] if str(error) else type(error).__name__
    sys.stderr.write(f"{prog}: error: {message}\n")
    return 2


def number_arg(convert: Callable[[str], Any], accept: Callable[[Any], bool],
               expected: str) -> Callable[[str], Any]:
    """An argparse ``type``: ``convert`` the text, and refuse what fails it or ``accept``."""
    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


positive_int = number_arg(int, lambda value: value > 0, "a positive integer")
non_negative_int = number_arg(int, lambda value: value >= 0, "an integer >= 0")
positive_float = number_arg(float, lambda value: math.isfinite(value) and value > 0,
                            "a positive number")
growth_float = number_arg(float, lambda value: math.isfinite(value) and value >= 1,
                          "a number >= 1")
