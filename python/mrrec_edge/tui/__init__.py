"""``mrrec-tui``: the terminal app of mrrec-edge (Textual)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mrrec_edge.errors import MrrecError


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="MRREC_HOME",
    help="State folder (default: $MRREC_HOME, else the platform's user data dir).",
)
@click.option("--user", help="Start as this user (default: the first one).")
def cli(home: Path | None, user: str | None) -> None:
    """The mrrec-edge assistant in the terminal: chat, memory inspector, users and import.

    F1 lists every key; ctrl+p runs anything by name.
    """
    from mrrec_edge.cli import _setup_logging
    from mrrec_edge.config import load_settings
    from mrrec_edge.tui.app import MrrecApp

    settings = load_settings(home)
    # The log file only: stderr belongs to the app's screen.
    _setup_logging(settings.log_path, verbose=False)
    MrrecApp(settings, user=user).run()


def main(argv: list[str] | None = None) -> None:
    """Runs the app; an error before it starts (a bad config, a locked store) is one line."""
    try:
        cli.main(args=argv, prog_name="mrrec-tui", standalone_mode=False)
    except click.exceptions.Abort:
        pass
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except MrrecError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
