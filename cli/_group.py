"""The command group: usage errors as one ``modelsize: --option: problem`` line, exit 2.

Click and typer print a five-line usage box for a bad option value (``--runs 0``, ``--format
bogus``); modelsize's rule is one line on stderr for any bad input. Every command goes through
:meth:`ModelsizeGroup.main`, so the rule holds for every option of every command, including
ones added later, without a check per option.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from typing import Any

import typer
from typer.core import TyperGroup

try:  # typer 0.2x runs its own copy of click; older typer uses click itself
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - depends on the typer version installed
    from click import exceptions as click_exceptions  # type: ignore[no-redef]

__all__ = ["EXIT_INTERRUPTED", "ClickException", "ModelsizeGroup", "usage_error_line"]

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
ClickException = click_exceptions.ClickException

# Validation messages (pydantic's in typer 0.2x, click's before) -> "must be ..." phrasing.
_REWRITES = (
    (re.compile(r"^Value error, "), ""),
    (re.compile(r"^Input should be greater than or equal to (\S+)"), r"must be at least \1"),
    (re.compile(r"^Input should be less than or equal to (\S+)"), r"must be at most \1"),
    (re.compile(r"^Input should be (greater|less) than (\S+)"), r"must be \1 than \2"),
    (re.compile(r"^Input should be a valid integer.*"), "must be a whole number"),
    (re.compile(r"^Input should be a valid number.*"), "must be a number"),
    (re.compile(r"^Input should be "), "must be "),
    (re.compile(r"^\S+ is not in the range x>=(\S+?)\.?$"), r"must be at least \1"),
    (re.compile(r"^\S+ is not in the range x<=(\S+?)\.?$"), r"must be at most \1"),
    (re.compile(r"^\S+ is not in the range (\S+?)<=x<=(\S+?)\.?$"), r"must be between \1 and \2"),
)


def _param_name(param: Any, hint: Any) -> str | None:
    """``--runs`` for an option (its long name), ``MODEL`` for an argument."""
    if param is not None and getattr(param, "param_type_name", "") == "option":
        opts = list(getattr(param, "opts", ()))
        longs = [o for o in opts if o.startswith("--")]
        if longs or opts:
            return str((longs or opts)[0])
    if param is not None and getattr(param, "param_type_name", "") == "argument":
        name = getattr(param, "human_readable_name", None) or getattr(param, "name", "") or ""
        return str(name).upper()
    if isinstance(hint, str) and hint:
        return hint.strip("'\"")
    if isinstance(hint, Sequence) and hint:
        return str(hint[0])
    return None


def _one_line(text: str) -> str:
    text = " ".join(text.split()).rstrip(".")
    for pattern, replacement in _REWRITES:
        text = pattern.sub(replacement, text)
    return text[:1].lower() + text[1:] if text[:2] != text[:2].upper() else text


def usage_error_line(error: Exception) -> str:
    """The one line shown for a command-line usage error, without the ``modelsize: `` prefix."""
    if isinstance(error, click_exceptions.BadParameter):
        name = _param_name(error.param, error.param_hint)
        if isinstance(error, click_exceptions.MissingParameter):
            problem = "missing (required)"
        else:
            problem = _one_line(error.message)
        return f"{name}: {problem}" if name else problem
    if isinstance(error, click_exceptions.NoSuchOption):
        hint = f" (did you mean {', '.join(error.possibilities)}?)" if error.possibilities else ""
        return f"no such option {error.option_name}{hint}"
    format_message = getattr(error, "format_message", None)
    return _one_line(format_message() if callable(format_message) else str(error))


def _echo_err(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


class ModelsizeGroup(TyperGroup):
    """A typer group whose usage errors are one line on stderr (exit 2), interrupts exit 130."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command line; ``standalone_mode`` exits with the code, otherwise returns it."""
        try:
            result = super().main(
                args, prog_name or "modelsize", complete_var, standalone_mode=False, **extra
            )
            code = result if isinstance(result, int) else 0
        except click_exceptions.NoArgsIsHelpError as e:
            e.show()  # bare ``modelsize``: the help, as click prints it
            code = e.exit_code
        except click_exceptions.ClickException as e:
            _echo_err(f"modelsize: {usage_error_line(e)}")
            code = 2 if isinstance(e, click_exceptions.UsageError) else e.exit_code
        except (typer.Abort, KeyboardInterrupt):
            _echo_err("modelsize: interrupted")
            code = EXIT_INTERRUPTED
        if standalone_mode:
            sys.exit(code)
        return code
