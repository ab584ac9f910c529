"""The `resnet-tui` entry point: bare, it opens the app at once; with arguments, the CLI.

Opening the app does not build the Typer CLI first, so the first screen paints sooner.
"""

import sys


def main() -> None:
    for stream in (sys.stdout, sys.stderr):
        # A terminal whose encoding cannot show a character (the C locale's ASCII) shows
        # it as an escape rather than failing the command.
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    first = sys.argv[1] if len(sys.argv) > 1 else ""
    if first == "--db" or first.startswith("--db="):
        sys.argv.insert(1, "app")  # `resnet-tui --db PATH` opens the app on that store
    if len(sys.argv) > 1:
        from resnet_tui.cli import main as command_line

        command_line()
        return
    from resnet_tui.runs.store import RunStore, StoreError

    try:
        store = RunStore()
    except (StoreError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    from resnet_tui.app.app import ResnetApp

    ResnetApp(store).run()
