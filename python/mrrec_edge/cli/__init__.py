"""``mrrec``: the command line of mrrec-edge. One entry point, a subcommand per job."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import NoReturn

import click
from rich.markup import escape

from mrrec_edge import __version__
from mrrec_edge.cli import ask, bundle, data, eval, memory
from mrrec_edge.cli._paths import UserPath
from mrrec_edge.cli._ui import err_console
from mrrec_edge.config import load_settings
from mrrec_edge.errors import MrrecError, disk_error


def _ours_or_warning(record: logging.LogRecord) -> bool:
    # Libraries (onnxruntime's quantizer above all) log chatty INFO lines on the root logger.
    return record.name.startswith("mrrec_edge") or record.levelno >= logging.WARNING


class _LogFile(logging.FileHandler):
    """The log file, silent once it cannot be written: on a full or read-only disk, logging's
    own "--- Logging error ---" traceback would bury the command's error line (which says
    what failed)."""

    failed = False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.failed:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        self.failed = True


def _setup_logging(log_path: Path, verbose: bool) -> None:
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = _LogFile(log_path, encoding="utf-8")
        handler.setFormatter(fmt)
        handler.setLevel(logging.INFO)
        handler.addFilter(_ours_or_warning)
        root.addHandler(handler)
    except OSError:
        pass  # a read-only home must not stop read-only commands
    if verbose:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(fmt)
        stream.setLevel(logging.DEBUG)
        root.addHandler(stream)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home",
    type=UserPath(file_okay=False),
    envvar="MRREC_HOME",
    help="State folder (default: $MRREC_HOME, else the platform's user data dir).",
)
@click.option("-v", "--verbose", is_flag=True, help="Show the log on stderr.")
@click.version_option(__version__, prog_name="mrrec")
@click.pass_context
def cli(ctx: click.Context, home: Path | None, verbose: bool) -> None:
    """mrrec-edge: an offline personal recommendation assistant (MR.Rec).

    Import your history, build memory, and ask for recommendations, all on this machine.
    """
    settings = load_settings(home)
    _setup_logging(settings.log_path, verbose)
    ctx.obj = settings


cli.add_command(data.import_command)
cli.add_command(data.data_group)
cli.add_command(data.stats_command)
cli.add_command(memory.memory_group)
cli.add_command(memory.feedback_command)
cli.add_command(memory.items_group)
cli.add_command(memory.index_group)
cli.add_command(bundle.bundle_group)
cli.add_command(ask.ask_command)
cli.add_command(eval.eval_command)


def main(argv: list[str] | None = None) -> None:
    """Runs the CLI; expected failures print one clear line, never a traceback."""
    try:
        cli.main(args=argv, prog_name="mrrec", standalone_mode=False)
    except click.exceptions.Abort:
        err_console.print("[red]aborted[/]")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted: nothing of the interrupted step was written[/]")
        sys.exit(130)
    except MrrecError as exc:
        _fail(exc)
    except Exception as exc:
        # A full or read-only disk is the user's to fix, not a bug: one line as well.
        if (disk := disk_error(exc)) is None:
            raise
        _fail(disk)


def _fail(exc: MrrecError) -> NoReturn:
    logging.getLogger("mrrec_edge").info("failed: %s", exc)
    # escape: messages quote file contents and config sections ("[retrieval]"). soft_wrap: one
    # line, however long the paths in it (the terminal wraps it, not us).
    err_console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
    sys.exit(1)
