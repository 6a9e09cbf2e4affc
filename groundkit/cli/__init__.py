"""The command line: thin commands that parse arguments and call the library.

    groundkit run | report | benchmark | ablate | calibrate | demo-data | checkpoints list|show|verify | recipes list|show

Every exception that reaches the command line becomes one ``error:`` line (exit 2); ``--debug`` or
``GROUNDKIT_DEBUG=1`` shows the traceback.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer

from groundkit.cli.ablate import ablate
from groundkit.cli.benchmark import benchmark
from groundkit.cli.calibrate import calibrate
from groundkit.cli.catalog import checkpoints_app, recipes_app
from groundkit.cli.demo import demo_data
from groundkit.cli.report import report
from groundkit.cli.run import run

# help is not cut at 80 columns when piped into a file or `less`
CONTEXT = {"max_content_width": 120, "terminal_width": 120, "help_option_names": ["-h", "--help"]}
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  context_settings=CONTEXT, help="Zero-shot phrase grounding from diffusion cross-attention.")


def _version(value: bool) -> None:
    if value:
        from groundkit import __version__

        typer.echo(f"groundkit {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True,
                                                 help="print the version and exit")) -> None:
    """Zero-shot phrase grounding from diffusion cross-attention."""


app.command("run", context_settings=CONTEXT)(run)
app.command("report", context_settings=CONTEXT)(report)
app.command("benchmark", context_settings=CONTEXT)(benchmark)
app.command("ablate", context_settings=CONTEXT)(ablate)
app.command("calibrate", context_settings=CONTEXT)(calibrate)
app.command("demo-data", context_settings=CONTEXT)(demo_data)
app.add_typer(checkpoints_app, name="checkpoints", context_settings=CONTEXT)
app.add_typer(recipes_app, name="recipes", context_settings=CONTEXT)

DEBUG_HINT = "(run with --debug, or set GROUNDKIT_DEBUG=1, for the traceback)"


def describe_error(exc: BaseException) -> str:
    """One line a user can act on, for any exception that reaches the command line."""
    import errno

    from groundkit.core.io import WriteError, explain_os_error

    if isinstance(exc, WriteError):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM) and exc.filename:
        return str(explain_os_error(Path(exc.filename), exc))
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror or exc}"
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, (ValueError, FileNotFoundError, LookupError)):
        return text
    return f"{type(exc).__name__}: {text}"


def main(argv: list[str] | None = None) -> None:  # console script
    """Run the CLI; an exception becomes one ``error:`` line (exit 2), its traceback only with --debug."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = bool(os.environ.get("GROUNDKIT_DEBUG"))
    if "--debug" in args:
        args.remove("--debug")
        debug = True
        os.environ["GROUNDKIT_DEBUG"] = "1"  # for the commands' own error paths (common.fail)
    try:
        app(args=args, prog_name="groundkit")
    except KeyboardInterrupt:
        typer.secho("interrupted: results written so far are kept; run the same command again to resume", err=True)
        sys.exit(130)
    except Exception as exc:
        if debug:
            raise
        typer.secho(f"error: {describe_error(exc)}", fg=typer.colors.RED, err=True)
        typer.secho(DEBUG_HINT, err=True)
        sys.exit(2)
