"""Modal dialogs: confirm an action, quit with live runs, edit a run, choose how to fuse runs."""

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from resnet_tui.runs.labels import LabelError, check_label


class ConfirmDialog(ModalScreen[bool]):
    """Asks a yes/no question; dismisses with True for yes. Escape means no."""

    BINDINGS = [
        Binding("escape", "answer(False)", "Cancel", id="dialog.cancel"),
        Binding("y", "answer(True)", "Yes", id="dialog.yes"),
        Binding("n", "answer(False)", "No", id="dialog.no"),
    ]

    def __init__(self, question: str, yes: str = "Yes", no: str = "Cancel") -> None:
        super().__init__()
        self.question = question
        self.yes = yes
        self.no = no

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question)
            with Horizontal(classes="buttons"):
                # The keys on the buttons: y and n answer from anywhere in the dialog.
                yield Button(f"{self.yes} (y)", id="yes", variant="error")
                yield Button(f"{self.no} (n)", id="no", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class QuitDialog(ModalScreen[str]):
    """Quitting with live runs: leave them running (the default), stop them, or stay."""

    BINDINGS = [Binding("escape", "choose('cancel')", "Cancel", id="dialog.cancel")]

    def __init__(self, live: int) -> None:
        super().__init__()
        self.live = live

    def compose(self) -> ComposeResult:
        runs = "1 run is" if self.live == 1 else f"{self.live} runs are"
        they = "It goes" if self.live == 1 else "They go"
        with Vertical(classes="dialog"):
            yield Label(f"{runs} still training. {they} on without the app unless stopped.")
            with Horizontal(classes="buttons"):
                yield Button("Leave running", id="leave", variant="primary")
                yield Button("Stop them", id="stop", variant="error")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#leave", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id or "cancel")

    def action_choose(self, choice: str) -> None:
        self.dismiss(choice)


class EditRunDialog(ModalScreen[dict[str, str] | None]):
    """Rename a run and set its tags and notes; Enter saves, Escape cancels."""

    DEFAULT_CSS = """
    EditRunDialog {
        align: center middle;
    }
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="dialog.cancel")]

    def __init__(self, run_id: int, name: str, tags: str, notes: str) -> None:
        super().__init__()
        self.run_id = run_id
        self.values = {"name": name, "tags": tags, "notes": notes}

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(f"Run {self.run_id}")
            yield Label("Name")
            yield Input(self.values["name"], id="name")
            yield Label("Tags (comma-separated)")
            yield Input(self.values["tags"], placeholder="baseline, sweep-3", id="tags")
            yield Label("Notes")
            yield Input(self.values["notes"], placeholder="what this run tried", id="notes")
            with Horizontal(classes="buttons"):
                yield Button("Save", id="save", variant="primary")
                yield Button("Cancel", id="cancel")

    def _save(self) -> None:
        values = {key: self.query_one(f"#{key}", Input).value.strip() for key in self.values}
        if not values["name"]:
            self.app.tell("a run needs a name", severity="error")
            return
        try:
            for what, text in values.items():
                check_label(text, what)
        except LabelError as error:  # the dialog stays open, the text as typed
            self.app.tell(str(error), severity="error")
            return
        self.dismiss(values)

    def on_input_submitted(self) -> None:
        self._save()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "save":
            self._save()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)


# (choice, button, what it does, how many runs it takes: "one" or "many")
FUSIONS = (
    ("ensemble", "Ensemble", "average the runs' class probabilities (any architectures)", "many"),
    ("soup", "Soup", "average their weights (one architecture, one start)", "many"),
    ("greedy", "Greedy soup", "add runs best first while validation accuracy holds", "many"),
    ("wise-ft", "WiSE-FT", "mix the run's backbone with its starting weights", "one"),
)


class FuseDialog(ModalScreen[str | None]):
    """Choose how to fuse the marked runs (or the one run in view); Escape cancels."""

    # Each way beside its button, wrapped to the dialog's width (a Static: the app's
    # `.dialog Label` rule makes labels as wide as the dialog, cut beside a button).
    DEFAULT_CSS = """
    FuseDialog {
        align: center middle;
    }
    FuseDialog .choice {
        height: auto;
    }
    FuseDialog .choice Static {
        width: 1fr;
        height: 3;
        padding: 0 1;
        content-align: left middle;
    }
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="dialog.cancel")]

    def __init__(self, run_ids: list[int]) -> None:
        super().__init__()
        self.run_ids = run_ids

    def compose(self) -> ComposeResult:
        count = "one" if len(self.run_ids) == 1 else "many"
        runs = ", ".join(str(run_id) for run_id in self.run_ids)
        with Vertical(classes="dialog"):
            yield Label(f"Fuse run{'s' if count == 'many' else ''} {runs} into a new run:")
            for choice, label, description, takes in FUSIONS:
                if takes == count:
                    with Horizontal(classes="choice"):
                        yield Button(label, id=choice, variant="primary")
                        yield Static(description)
            if count == "one":
                yield Label("[dim]Mark two or more runs (space) for ensembles and soups.[/]")
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None if event.button.id == "cancel" else event.button.id)

    def action_cancel(self) -> None:
        self.dismiss(None)
