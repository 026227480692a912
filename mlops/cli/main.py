"""Entry point and the one error boundary of the CLI."""

from __future__ import annotations

import sys
import traceback

import click

from mlops.errors import ExitCode, MlopsError


class _State:
    traceback = False


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--traceback", "show_traceback", is_flag=True, help="Show a traceback for errors (for bug reports).")
@click.version_option(package_name="mlops")
def cli(show_traceback: bool) -> None:
    """GitOps MLOps: models, datasets, pipelines and environments as YAML in git."""
    _State.traceback = show_traceback


def _register() -> None:
    from mlops.cli import init, model, promote, schema, store, validate

    cli.add_command(validate.validate)
    cli.add_command(model.model)
    cli.add_command(promote.promote)
    cli.add_command(promote.rollback)
    cli.add_command(init.init)
    cli.add_command(schema.schema)
    cli.add_command(store.store)


_register()


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; every user-caused error ends as one message per problem and an exit code."""
    args = sys.argv[1:] if argv is None else argv
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
            traceback.print_exc()
        else:
            click.echo(f"internal error: {type(exc).__name__}: {exc} (run with --traceback for details)", err=True)
        sys.exit(ExitCode.INTERNAL)
    sys.exit(code if isinstance(code, int) else 0)
