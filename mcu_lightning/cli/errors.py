"""How ``mcu`` ends on an error: the user's input is one ``error:`` line and exit status 2, anything else a bug.

Only an :class:`~mcu_lightning.core.errors.InputError` is printed as one line, by :func:`exit_on_input_error` (the
``mcu`` command and its LightningCLI run under it). The converters below turn into one what is the user's input
without being one: jsonargparse's rejection of a value (:func:`parse_error_line`), a path that does not exist
(:data:`INPUT_ERRORS`), a full or read-only disk (:func:`disk_errors`). Any other exception is a bug (ours, or in a
class the config names): it keeps its traceback, followed by :func:`bug_report`'s line where the CLI builds objects.
``MCU_TRACEBACK=1`` shows the traceback of every exception, the user's input included.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator

from mcu_lightning.core.errors import InputError

#: Exceptions raised while building the module and data that are the user's input, not a bug: what the package
#: declares as such (``InputError``), and a path that does not exist. A ``ValueError``, ``KeyError`` or
#: ``ImportError`` from elsewhere is a bug and keeps its traceback.
INPUT_ERRORS = (InputError, FileNotFoundError, NotADirectoryError)
#: The line printed under the traceback of an exception that is not the user's input.
BUG_HINT = (
    "this looks like a bug in mcu-lightning or in a class your config names, not a mistake in your input: "
    "please report it with the traceback above"
)
#: The exit status of a command stopped by the user's input (a bug exits with 1).
INPUT_EXIT = 2


class ConfigError(InputError):
    """An input error the CLI states itself, as the one line to print (a command, a config file, a class path, or
    another error folded into one line); printed whatever ``MCU_TRACEBACK`` says."""


def bug_report(err: BaseException, where: str, culprit: BaseException | None = None) -> SystemExit:
    """Print ``err``'s traceback and :data:`BUG_HINT` naming ``culprit`` (the exception behind ``err`` that was not
    the user's input; default ``err``); the ``SystemExit(1)`` to raise."""
    import traceback

    traceback.print_exception(err, file=sys.stderr)
    print(f"error: {type(culprit or err).__name__} while {where}: {BUG_HINT}", file=sys.stderr)
    return SystemExit(1)


@contextlib.contextmanager
def exit_on_input_error() -> Iterator[None]:
    """The one place an ``InputError`` becomes ``error: <message>`` on stderr and exit status 2; with
    ``MCU_TRACEBACK=1`` it propagates with its traceback (a :class:`ConfigError` is printed all the same)."""
    try:
        yield
    except InputError as err:
        if os.environ.get("MCU_TRACEBACK") and not isinstance(err, ConfigError):
            raise
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(INPUT_EXIT) from err


def folded(err: BaseException) -> str:
    """``err``'s message on one line."""
    return " ".join(str(err).split())


def parse_error_line(command: str) -> Callable[[BaseException], str]:
    """One line for a parser's rejection (a value of the wrong type, an unknown key): jsonargparse's message folded,
    then where the accepted keys are listed, instead of its usage dump (the parsers run with ``exit_on_error=False``).
    """
    return lambda err: f"{folded(err)} (mcu {command} --help lists every key and its type)"


@contextlib.contextmanager
def one_line_errors(
    kinds: type[BaseException] | tuple[type[BaseException], ...], line: Callable[[BaseException], str] = str
) -> Iterator[None]:
    """Turn an exception of ``kinds`` (a user's input, not a bug) into ``ConfigError(line(err))``, which
    :func:`exit_on_input_error` prints as one ``error:`` line; with ``MCU_TRACEBACK=1`` it propagates as raised."""
    try:
        yield
    except kinds as err:
        if os.environ.get("MCU_TRACEBACK"):
            raise
        raise ConfigError(line(err)) from err


@contextlib.contextmanager
def disk_errors() -> Iterator[None]:
    """A full or read-only disk met by any writer (a folder made, TensorBoard's event file, a checkpoint) is one
    line naming the file and the fix (``core.storage``); other ``OSError`` keep their traceback."""
    try:
        yield
    except OSError as err:
        from mcu_lightning.core.storage import storage_error

        disk = storage_error(err)
        if disk is None or os.environ.get("MCU_TRACEBACK"):
            raise
        raise ConfigError(folded(disk)) from err
