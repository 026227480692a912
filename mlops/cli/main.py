"""Entry point and the one error boundary of the CLI."""

from __future__ import annotations

import gc
import importlib
import os
import sys
from typing import NoReturn

import click

from mlops.errors import ExitCode, MlopsError


class _State:
    traceback = False
    fast_exit = False


def request_fast_exit() -> None:
    """Let the console entry point end the process without tearing the heap down (see :func:`_exit_now`).

    For commands that end holding a large heap and own nothing that needs cleaning up at exit
    (``validate``: 10,000 manifests leave about a million objects behind).
    """
    _State.fast_exit = True


# command -> "module:attribute" under mlops.cli. A command's module is imported when that command runs (or
# when help lists them all): importing all of them cost every command, `mlops validate` included, ~25 ms.
_COMMANDS = {
    "validate": "validate:validate",
    "model": "model:model",
    "promote": "promote:promote",
    "rollback": "promote:rollback",
    "init": "init:init",
    "schema": "schema:schema",
    "store": "store:store",
    "runs": "runs:runs",
    "projects": "runs:projects",
    "data": "data:data",
    "retrain": "retrain:retrain",
    "pipeline": "pipeline:pipeline",
    "cluster": "cluster:cluster",
    "plan": "reconcile:plan",
    "reconcile": "reconcile:reconcile",
    "status": "reconcile:status",
    "rollout": "reconcile:rollout",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        known = super().get_command(ctx, cmd_name)
        if known is not None or cmd_name not in _COMMANDS:
            return known
        module, _, attribute = _COMMANDS[cmd_name].partition(":")
        command: click.Command = getattr(importlib.import_module(f"mlops.cli.{module}"), attribute)
        self.add_command(command, cmd_name)
        return command


@click.group(
    cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.option("--traceback", "show_traceback", is_flag=True, help="Show a traceback for errors (for bug reports).")
@click.version_option(package_name="mlops")
def cli(show_traceback: bool) -> None:
    """GitOps MLOps: models, datasets, pipelines and environments as YAML in git."""
    _State.traceback = show_traceback


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; every user-caused error ends as one message per problem and an exit code."""
    if argv is not None:  # called in-process (tests, other programs): always a plain SystemExit
        _main(argv)
    _State.fast_exit = False
    # A command builds its objects in bursts (10,000 file records, a million manifest nodes) and then exits.
    # With CPython's default first threshold (700 new objects) each burst runs a cyclic collection every few
    # hundred records, and every few of those walks the whole heap of imported modules: 40 ms of the 60 ms
    # it took to record 10,000 digests. Garbage is still collected, every 50,000 new objects.
    gc.set_threshold(50_000, 20, 20)
    try:
        _main(sys.argv[1:])
    except SystemExit as exc:
        if _State.fast_exit:
            _exit_now(exc.code)
        raise


def _exit_now(code: object) -> None:
    """``sys.exit(code)`` without interpreter teardown, as mypy does: flush the output, then ``os._exit``.

    Teardown frees every object one by one and runs a last full garbage collection, which after
    validating 10,000 manifests costs more than a tenth of a second for nothing. Returns (and the
    caller exits normally) for a non-integer code or when flushing fails, e.g. on a closed pipe,
    so those cases are reported exactly as before.
    """
    if code is not None and not isinstance(code, int):
        return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:
        return
    os._exit(code or 0)


def _main(args: list[str]) -> NoReturn:
    _State.traceback = "--traceback" in args
    try:
        code = cli.main(args=args, prog_name="mlops", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(ExitCode.USAGE if isinstance(exc, click.UsageError) else exc.exit_code)
    except MlopsError as exc:
        if _State.traceback:
            import traceback  # only for --traceback: a command that succeeds never loads it

            traceback.print_exc()
        first, *details = exc.lines()
        click.echo(f"error: {first}", err=True)
        for line in details:  # details are indented continuation lines of the same error
            click.echo(line, err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # a bug: say so in one line unless asked for the traceback
        if _State.traceback:
            import traceback

            traceback.print_exc()
        else:
            click.echo(f"internal error: {type(exc).__name__}: {exc} (run with --traceback for details)", err=True)
        sys.exit(ExitCode.INTERNAL)
    sys.exit(code if isinstance(code, int) else 0)
