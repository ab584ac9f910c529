"""The `resnet-tui` command line: headless runs, listings, comparisons and store management.

`resnet-tui app` (or `resnet-tui` alone, see main.py) opens the interactive app. Every bad
input ends in one line on stderr and exit code 2. One module per group of commands: run.py
(run, resume, stop), runs.py (runs, show, compare, rm, app), queue.py (sweep, worker,
summary, queue), search.py (search), fuse.py (ensemble, soup) and catalog.py (archs,
datasets, devices); what they share is in common.py, and the options made from the run
spec in spec_options.py.
"""

import errno
import sqlite3
import sys

import typer

from resnet_tui.cli import (
    catalog,
    export,
    export_model,
    fuse,
    gradcam,
    lr_find,
    mistakes,
    predict,
    queue,
    run,
    runs,
    search,
)
from resnet_tui.cli.common import EXIT_USER_ERROR, say_error
from resnet_tui.runs.identity import StoreError, describe_database_error, is_passing_fault
from resnet_tui.runs.labels import LabelError

# A command that could not finish for a fault of the machine (not of its input).
EXIT_FAILED = 1

try:  # Typer 0.20 and later carry their own copy of Click
    from typer._click import exceptions as click_exceptions
except ImportError:
    from click import exceptions as click_exceptions

app = typer.Typer(
    name="resnet-tui",
    help="Train, watch and compare residual networks. `resnet-tui run` trains the default "
    "ResNet on the built-in shapes dataset.",
    add_completion=False,
    pretty_exceptions_enable=False,
)

# The commands, in the order `resnet-tui --help` lists them.
COMMANDS = (
    ("run", run.run_command),
    ("runs", runs.list_runs),
    ("show", runs.show_run),
    ("compare", runs.compare_runs),
    ("mistakes", mistakes.show_mistakes),
    ("export-metrics", export.export_metrics),
    ("predict", predict.predict_command),
    ("export", export_model.export_command),
    ("gradcam", gradcam.gradcam_command),
    ("resume", run.resume_run),
    ("ensemble", fuse.ensemble_runs),
    ("soup", fuse.soup_runs),
    ("rm", runs.remove_runs),
    ("sweep", queue.sweep_command),
    ("search", search.search_command),
    ("lr-find", lr_find.lr_find_command),
    ("worker", queue.run_worker),
    ("summary", queue.show_summary),
    ("queue", queue.show_queue),
    ("stop", run.stop_runs),
    ("archs", catalog.list_architectures),
    ("datasets", catalog.list_datasets),
    ("devices", catalog.list_devices),
    ("app", runs.open_app),
)
for name, command in COMMANDS:
    app.command(name)(command)


def main() -> None:
    """Entry point: Click's usage errors become one line and exit code 2."""
    try:
        code = app(standalone_mode=False)
    except click_exceptions.UsageError as error:
        hint = ""
        if error.ctx is not None:
            hint = f" (see `{error.ctx.command_path} --help`)"
        say_error(f"{error.format_message()}{hint}")
        sys.exit(EXIT_USER_ERROR)
    except typer.Abort:
        sys.exit(130)
    except typer.Exit as exit_:
        sys.exit(exit_.exit_code)
    except click_exceptions.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except LabelError as error:  # a name, tag or note that no path checked before the store
        say_error(str(error))
        sys.exit(EXIT_USER_ERROR)
    except StoreError as error:  # a store that went bad while a command used it
        say_error(str(error))
        sys.exit(EXIT_USER_ERROR)
    except sqlite3.Error as error:  # locked too long, a full disk, a damaged page
        say_error(describe_database_error(None, error))
        sys.exit(EXIT_FAILED if is_passing_fault(error) else EXIT_USER_ERROR)
    except OSError as error:  # a path the system refuses (too long, a loop), a full disk
        full = error.errno in (errno.ENOSPC, errno.EDQUOT)
        where = f"{error.filename}: " if error.filename else ""
        if full:
            say_error(
                f"the disk is full ({where}{error.strerror}); free some space, or keep the "
                "store on another disk with --db, and try again"
            )
        else:
            say_error(f"{where}{error.strerror or error}")
        sys.exit(EXIT_FAILED if full else EXIT_USER_ERROR)
    sys.exit(code if isinstance(code, int) else 0)
