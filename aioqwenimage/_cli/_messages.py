"""
What the command line says to people: errors in words, model names with a suggestion, counts
and durations in words, verbosity.

The library's errors are written for programmers (their class is part of the message's meaning);
a command line user needs what happened and what to do, without an internal class name. Library
log records go to stderr at the level ``-v``/``-q`` ask for; without either flag the library's
own switch (``AIOQWENIMAGE_LOG``) or Python's defaults apply, so the two never print twice.
"""

from __future__ import annotations

import difflib
import logging
import re
import warnings
from typing import TYPE_CHECKING, Final

from aioqwenimage._errors import (
    APIError,
    AuthenticationError,
    QwenImageError,
    SubmissionUncertainError,
    TransportError,
)

if TYPE_CHECKING:
    import argparse

__all__ = [
    "add_output_options",
    "configure_output",
    "describe_error",
    "format_duration",
    "in_words",
    "lost_create",
    "model_problem",
    "plural",
    "suggest_model",
]

# "ServerDisconnectedError: " inside a message: the library keeps it for programmers.
_CLASS_PREFIX: Final = re.compile(r"\b[A-Z][A-Za-z]*(?:Error|Exception): ")
_UNKNOWN_MODEL_WARNING: Final = r"model .* is not in aioqwenimage's catalog"
_MINUTE: Final = 60
_HOUR: Final = 3600
_DECIMALS_BELOW: Final = 10.0  # short runs (the emulator) deserve a decimal


def add_output_options(parser: argparse.ArgumentParser) -> None:
    """``-v``/``-q``: how much the command says."""
    group = parser.add_argument_group("output")
    loudness = group.add_mutually_exclusive_group()
    loudness.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="show the library's log: -v retries and throttling (INFO), -vv every request (DEBUG)",
    )
    loudness.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress or status lines: results, problems and errors only",
    )


def configure_output(verbose: int, *, quiet: bool) -> None:
    """Route the library's log to stderr at the level the flags ask for; format warnings."""
    # A warning is one line addressed to the user, not a source location and a code line.
    warnings.formatwarning = _format_warning
    if not verbose and not quiet:
        return
    from aioqwenimage._logging import configure

    # The library's own switch (the one $AIOQWENIMAGE_LOG uses): one handler, replaced not added.
    configure(logging.ERROR if quiet else logging.INFO if verbose == 1 else logging.DEBUG)


def _format_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    line: str | None = None,
) -> str:
    del category, filename, lineno, line
    return f"aioqwenimage: warning: {message}\n"


def suggest_model(name: str) -> str | None:
    """The catalog's closest name to `name`, if one is close enough to be a typo of it."""
    from aioqwenimage._catalog import MODELS

    close = difflib.get_close_matches(name, sorted(MODELS), n=1, cutoff=0.75)
    return close[0] if close else None


def model_problem(name: str) -> tuple[str | None, str | None]:
    """
    What is wrong with a model name: ``(error, warning)``, each ``None`` when there is none.

    A name of no known family is an error, with the nearest catalog name when there is one. A
    name the catalog does not know but whose family it does (a new dated snapshot, or a typo)
    runs with that family's rules, with a warning that suggests the nearest name.
    """
    from aioqwenimage._catalog import resolve

    found = resolve(name)
    if found is not None and found[1]:
        return None, None
    from aioqwenimage._catalog import MODELS

    suggestion = suggest_model(name)
    hint = f"; did you mean {suggestion!r}?" if suggestion else ""
    if found is None:
        if suggestion is None:  # nothing close: the whole list is the help
            hint = f"; known models: {', '.join(sorted(MODELS))}"
        return f"unknown model {name!r}{hint}", None
    # The library warns too; ours says the same with the suggestion, so silence its copy.
    warnings.filterwarnings("ignore", message=_UNKNOWN_MODEL_WARNING, category=UserWarning)
    return None, (
        f"model {name!r} is not in the catalog; it is sent as is, with the rules of "
        f"{found[0].family} models{hint}"
    )


def in_words(text: str) -> str:
    """`text` without the exception class names a library message carries for programmers."""
    return _CLASS_PREFIX.sub("", text)


def describe_error(exc: QwenImageError) -> str:
    """A library error in words for the command line: what happened, and what to do."""
    if isinstance(exc, SubmissionUncertainError):
        return (
            "the request was sent but its answer was lost, so a task may exist: "
            f"{in_words(str(exc))}. "
            "`aioqwenimage tasks list` shows the account's recent tasks"
        )
    if isinstance(exc, TransportError):
        return (
            f"network failure: {in_words(str(exc))}. Check the connection, --base-url and --region "
            "(or use --emulator to work offline)"
        )
    if isinstance(exc, AuthenticationError):
        return f"the service refused the API key: {exc}"
    if isinstance(exc, APIError):
        return f"the service refused the request: {exc}"
    return str(exc)


def lost_create(exc: QwenImageError) -> str:
    """Why a create's outcome is unknown, short: the network error at the root of the client's."""
    root: BaseException = exc
    while root.__cause__ is not None:
        root = root.__cause__
    # The root's words, not its class: "Server disconnected", not ServerDisconnectedError.
    detail = in_words(str(root)) or (
        "timed out" if isinstance(root, TimeoutError) else type(root).__name__
    )
    return (
        f"the create was sent but its answer was lost ({detail}); a re-run reconciles it "
        "against the task list"
    )


def plural(count: int, noun: str) -> str:
    """``1 task``, ``2 tasks``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def format_duration(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``1h02m``; ``?`` when unknown."""
    if seconds is None:
        return "?"
    seconds = max(0.0, seconds)
    if seconds < _DECIMALS_BELOW:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < _MINUTE:
        return f"{whole}s"
    if whole < _HOUR:
        return f"{whole // _MINUTE}m{whole % _MINUTE:02d}s"
    return f"{whole // _HOUR}h{whole % _HOUR // _MINUTE:02d}m"
