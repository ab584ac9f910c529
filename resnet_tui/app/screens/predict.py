"""Predict with a run: classify image files with its best weights, each result beside its
image; the engine does the work in a process of its own (`python -m engine predict`)."""

import os
import time
from pathlib import Path
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.suggester import Suggester
from textual.widgets import DataTable, Header, Input, ProgressBar, Static
from textual.worker import get_current_worker

from engine.contract.locate import IMAGE_EXTENSIONS
from resnet_tui.app.widgets.footer import KeyFooter
from resnet_tui.app.widgets.picture import Picture
from resnet_tui.app.widgets.tables import Table
from resnet_tui.display import percent, shown
from resnet_tui.runs.engine_jobs import EngineJob, EngineJobError
from resnet_tui.runs.store import RunStore

# Results reach the table at most this often: a folder of thousands of small images
# classifies faster than a table can grow a row at a time.
SHOW_EVERY_S = 0.2
# More rows than this are counted, not listed (the CLI's --csv keeps them all).
MOST_ROWS = 5000
# Cells of the file column; a longer name is cut in its middle.
FILE_WIDTH = 26
# Entries of a folder looked at for a completion: a huge folder must not stall the keys.
MOST_ENTRIES = 2000


def middle_cut(text: str, width: int) -> str:
    """`text` in at most `width` cells, its middle given up for `…` where it is longer."""
    if len(text) <= width:
        return text
    keep = width - 1
    return text[: keep - keep // 2] + "…" + text[len(text) - keep // 2 :]


class PathSuggester(Suggester):
    """Completes a path as it is typed: the first folder or image file of its folder whose
    name starts with what follows the last slash (folders end in a slash); `→` or End
    takes it."""

    def __init__(self) -> None:
        super().__init__(use_cache=False, case_sensitive=True)

    async def get_suggestion(self, value: str) -> str | None:
        if not value:
            return None
        folder_text, slash, start = value.rpartition("/")
        folder = Path(os.path.expanduser(folder_text + slash)) if slash else Path(".")
        names = []
        try:
            with os.scandir(folder) as entries:
                for count, entry in enumerate(entries):
                    if count >= MOST_ENTRIES:
                        break
                    if not entry.name.startswith(start) or entry.name.startswith("."):
                        continue
                    if entry.is_dir():
                        names.append(entry.name + "/")
                    elif entry.name.lower().endswith(IMAGE_EXTENSIONS):
                        names.append(entry.name)
        except OSError:
            return None
        return folder_text + slash + min(names) if names else None


class PredictScreen(Screen):
    """Type a file, folder or glob and press Enter: each image's top classes, and the image
    of the row in view on the right. Escape stops a prediction under way, then leaves."""

    BINDINGS = [
        Binding("escape", "back", "Back", id="predict.back"),
        Binding("ctrl+r", "focus_path", "Path", id="predict.path"),
    ]

    def __init__(self, store: RunStore, run_id: int, checkpoint: Path) -> None:
        super().__init__()
        self.store = store
        self.run_id = run_id
        self.checkpoint = checkpoint
        self.job: EngineJob | None = None
        self.files: list[str] = []  # the table's rows' files
        self.answers: list[str] = []  # and what each was taken for, for the caption
        self.root: Path | None = None  # the folder the user typed: rows name files from it
        self.first_bad: str | None = None  # the first image that could not be read, and why

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(
            placeholder="image file, folder or glob (→ completes, Enter predicts)",
            suggester=PathSuggester(),
            id="predict-path",
        )
        yield Static(id="predict-status")
        yield ProgressBar(id="predict-progress", show_eta=True)
        with Horizontal(id="predict-body"):
            yield Table(id="predict-table", cursor_type="row", zebra_stripes=True)
            with Vertical(id="predict-picture"):
                yield Static(id="predict-caption")
                yield Vertical(id="predict-frame")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.sub_title = f"run {self.run_id} · predict"
        table = self.query_one("#predict-table", Table)
        table.add_column("file", width=FILE_WIDTH)  # a long name never pushes the answers away
        table.add_columns("class", "p", "then", "✓")
        self.query_one("#predict-progress", ProgressBar).display = False
        self.say(f"classify images with run {self.run_id}'s best weights")

    def say(self, line: str) -> None:
        self.query_one("#predict-status", Static).update(shown(line))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        path = event.value.strip()
        if not path:
            self.app.tell("type the path of an image file or folder first", severity="warning")
            return
        if self.job is not None:
            self.app.tell("a prediction is under way: Escape stops it", severity="warning")
            return
        table = self.query_one("#predict-table", Table)
        table.clear()
        self.files, self.answers = [], []
        self.first_bad = None
        typed = Path(os.path.expanduser(path))
        self.root = typed if typed.is_dir() else None
        self.say(f"reading {path}…")
        self.predict(os.path.expanduser(path))

    @work(thread=True, exclusive=True, group="predict")
    def predict(self, path: str) -> None:
        arguments = [f"--checkpoint={self.checkpoint}", f"--run={self.run_id}", "--", path]
        job = self.job = EngineJob("predict", arguments)
        worker = get_current_worker()
        waiting: list[dict[str, Any]] = []
        shown_at = 0.0
        try:
            for message in job.lines():
                if worker.is_cancelled:
                    break
                waiting.append(message)
                if time.monotonic() - shown_at >= SHOW_EVERY_S or message["kind"] == "finished":
                    self.app.call_from_thread(self.take, waiting)
                    waiting, shown_at = [], time.monotonic()
        except EngineJobError as error:
            if not worker.is_cancelled:  # else stopped by the user: the screen says so
                self.app.call_from_thread(self.say, f"cannot predict: {error.message}")
        finally:
            job.stop()
            self.job = None
        if waiting:
            self.app.call_from_thread(self.take, waiting)

    def take(self, messages: list[dict[str, Any]]) -> None:
        """Show what the engine said: progress, results, images it could not read, the end."""
        table = self.query_one("#predict-table", Table)
        bar = self.query_one("#predict-progress", ProgressBar)
        for message in messages:
            kind = message.get("kind")
            if kind == "started":
                table.focus()  # j/k move in the results now; ctrl+r goes back to the path
                bar.display = True
                bar.update(total=message.get("total") or None, progress=0)
                self.say(f"classifying {message.get('total', 0):,} images…")
            elif kind == "progress":
                bar.update(progress=message.get("done", 0))
            elif kind == "prediction" and len(self.files) < MOST_ROWS:
                self.add_row(table, message)
            elif kind == "bad_image" and self.first_bad is None:
                self.first_bad = f"{Path(str(message.get('path'))).name}: {message.get('reason')}"
            elif kind == "finished":
                bar.display = False
                self.say(self.summary(message))

    def add_row(self, table: Table, message: dict[str, Any]) -> None:
        top = message.get("top") or []
        first = top[0] if top else ["?", 0.0]
        then = top[1] if len(top) > 1 else None
        label = message.get("label")
        mark = "" if label is None else ("✓" if label == first[0] else f"✗ {label}")
        path = str(message.get("path", ""))
        answer = f"{first[0]} {100 * float(first[1]):.0f}%"
        table.add_row(
            shown(middle_cut(self.named(Path(path)), FILE_WIDTH)),
            shown(str(first[0])),
            f"{100 * float(first[1]):.0f}%",
            shown(f"{then[0]} {100 * float(then[1]):.0f}%") if then else "",
            shown(mark),
            key=str(len(self.files)),
        )
        self.files.append(path)
        self.answers.append(f"{answer} {mark}".rstrip())

    def named(self, path: Path) -> str:
        """A file as the table names it: from the folder the user typed (its class folder
        shows), or its own name."""
        try:
            return str(path.relative_to(self.root)) if self.root is not None else path.name
        except ValueError:
            return path.name

    def summary(self, message: dict[str, Any]) -> str:
        done = int(message.get("predicted", 0))
        line = (
            f"{done:,} image{'' if done == 1 else 's'} in {float(message.get('seconds', 0)):.1f} s"
        )
        if message.get("accuracy") is not None:
            line += f" · {percent(float(message['accuracy']))} right of {message['labelled']:,} "
            line += "labelled by their folder"
        if message.get("bad"):
            line += f" · {message['bad']:,} could not be read ({self.first_bad}"
            line += ", and more: resnet-tui predict lists them)" if message["bad"] > 1 else ")"
        if done > MOST_ROWS:
            line += f" · the first {MOST_ROWS:,} listed"
        return line

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key.value is None:
            return
        row = int(event.row_key.value)
        path = Path(self.files[row])
        caption = f"{self.named(path)}: {self.answers[row]}"
        self.query_one("#predict-caption", Static).update(shown(caption))
        frame = self.query_one("#predict-frame", Vertical)
        frame.remove_children()
        frame.mount(Picture(path))

    def action_focus_path(self) -> None:
        self.query_one("#predict-path", Input).focus()

    def action_back(self) -> None:
        if self.job is not None:
            self.workers.cancel_group(self, "predict")
            job, self.job = self.job, None
            job.stop()
            self.say("stopped")
            return
        self.app.pop_screen()
