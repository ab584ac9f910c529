"""The queue screen: the runs waiting for a worker, first in line first, to reorder or cancel."""

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Header, Static

from resnet_tui.app.dialogs import ConfirmDialog
from resnet_tui.app.screens.live_screen import LiveRunsScreen
from resnet_tui.app.widgets.footer import KeyFooter
from resnet_tui.app.widgets.tables import Table
from resnet_tui.display import markup_safe, shown
from resnet_tui.runs.model import Run
from resnet_tui.runs.queue import RunQueue
from resnet_tui.runs.removal import delete_runs
from resnet_tui.runs.store import RunStore

# (key, heading) of the queue's columns.
COLUMNS = (
    ("place", "place"),
    ("id", "id"),
    ("name", "name"),
    ("sweep", "sweep"),
    ("arch", "arch"),
    ("dataset", "dataset"),
    ("device", "device"),
)
EMPTY = """\
[b]The queue is empty.[/]

Queue runs from a shell with [b]resnet-tui sweep[/]: one run for every combination of the \
options given as lists, e.g.

    resnet-tui sweep --arch resnet20,resnet56 --lr 0.1,0.01 --epochs 30

A worker then runs the queue, first in line first, on the devices it is given, until the \
queue is empty. Start one in another shell:

    resnet-tui worker --devices cuda:0,cuda:1      [dim]# or --devices cpu[/]

The runs it starts show up live here and in the history. (Cross-val folds in the launch \
form, [b]n[/], queue their fold runs too, with a worker of their own.)"""


def queue_cells(place: int, run: Run) -> list[Text]:
    """A queued run's row: its place in line, then what it is (Text: names are not markup)."""
    plain = (
        str(place),
        str(run.id),
        run.name,
        str(run.sweep or ""),
        run.arch,
        run.dataset,
        run.device,
    )
    return [shown(text) for text in plain]


class QueueScreen(LiveRunsScreen):
    """The queue as the store has it, kept current; move the highlighted run or cancel it."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="queue.back"),
        Binding("enter", "open_run", "Open", id="queue.open"),
        Binding("shift+up,K", "move(-1)", "Move up", id="queue.move_up"),
        Binding("shift+down,J", "move(1)", "Move down", id="queue.move_down"),
        Binding("f", "to_front", "To front", id="queue.to_front"),
        Binding("d,delete", "cancel_run", "Cancel run", id="queue.cancel"),
    ]

    def __init__(self, store: RunStore) -> None:
        super().__init__(store)
        self.queue = RunQueue(store)
        self.title_shown = ""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="queue-title")
        yield Table(id="queue", cursor_type="row", zebra_stripes=True)
        yield Static(EMPTY, id="queue-empty")
        yield KeyFooter()

    def add_columns(self) -> None:
        self.sub_title = "the queue"
        table = self.runs_table()
        for key, heading in COLUMNS:
            table.add_column(heading, key=key)

    def fill_tables(self) -> None:
        """The queue as it is now: workers take runs, shells queue more or move them."""
        queued = self.queue.waiting()
        rows = [queue_cells(place, run) for place, run in enumerate(queued, start=1)]
        plain = [[str(cell) for cell in row] for row in rows]
        running = sum(run.status == "running" for run in self.store.live_runs())
        waiting = f"{len(queued)} run{'' if len(queued) == 1 else 's'} waiting"
        title = f" {waiting} · {running} running · a worker takes them first to last"
        if title != self.title_shown:
            self.title_shown = title
            self.query_one("#queue-title", Static).update(title)
        table = self.runs_table()
        self.query_one("#queue-empty").display = not queued
        table.display = bool(queued)
        if plain == self.shown:
            return
        self.shown = plain
        selected, row = self.selected_run_id(), table.cursor_row
        table.clear()
        for cells in rows:
            table.add_row(*cells, key=cells[1].plain)
        if selected is not None and str(selected) in table.rows:
            row = table.get_row_index(str(selected))
        if rows:
            table.move_cursor(row=min(row, len(rows) - 1))

    def _left_the_queue(self, run_id: int) -> str | None:
        """Why a run cannot be moved or cancelled any more, if it has left the queue."""
        run = self.store.run(run_id)
        if run is None:
            return f"run {run_id} is no longer in the store"
        if not run.waits_in_queue:
            return f"run {run_id} has left the queue: a worker took it (it is {run.status})"
        return None

    def action_move(self, step: int) -> None:
        """Move the highlighted run one place forward (-1) or back (1); the cursor follows."""
        run_id = self.selected_run_id()
        if run_id is None:
            return
        if not self.queue.move(run_id, step):
            gone = self._left_the_queue(run_id)
            if gone:
                self.app.tell(gone, severity="warning")
            else:
                self.app.tell(f"run {run_id} is {'first' if step < 0 else 'last'} in line already")
        self.refresh_from_store()

    def action_to_front(self) -> None:
        run_id = self.selected_run_id()
        if run_id is None:
            return
        if self.queue.move_to_front(run_id):
            self.app.tell(f"run {run_id} goes next")
        else:
            gone = self._left_the_queue(run_id) or f"run {run_id} is not in the queue"
            self.app.tell(gone, severity="warning")
        self.refresh_from_store()

    def action_cancel_run(self) -> None:
        """Take the highlighted run out of the queue and the store, after asking: it has
        trained nothing, so nothing is lost but its place and its (empty) folder."""
        run_id = self.selected_run_id()
        if run_id is None:
            return
        gone = self._left_the_queue(run_id)
        run = self.store.run(run_id)
        if gone or run is None:
            self.app.tell(gone or f"run {run_id} is no longer in the store", severity="warning")
            self.refresh_from_store()
            return

        def answered(yes: bool | None) -> None:
            if not yes:
                return
            deletion = delete_runs(self.store, [run])
            if deletion.deleted:
                self.app.tell(f"cancelled run {run_id}: out of the queue and the store")
            elif deletion.started:  # taken while the dialog was up
                self.app.tell(
                    f"a worker took run {run_id} meanwhile (it is {deletion.started[0].status}); "
                    f"stop it from its screen (x) or with `resnet-tui stop {run_id}`",
                    severity="warning",
                )
            else:
                self.app.tell(f"run {run_id} is no longer in the store", severity="warning")
            self.refresh_from_store()
            self.app.look_at_the_store()

        self.app.push_screen(
            ConfirmDialog(
                f"Cancel queued run {run_id} ({markup_safe(run.name)})? It has not trained; "
                "it leaves the queue and the store, with its folder.",
                "Cancel run",
                "Keep it",
            ),
            answered,
        )
