"""A run's mistakes on its test set: the worst predictions with their images, the class
pairs most confused, each class's precision, recall and F1, and Grad-CAM on an image."""

import tempfile
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DataTable, Header, Static, TabbedContent, TabPane
from textual.worker import get_current_worker

from resnet_tui.app.widgets.footer import KeyFooter
from resnet_tui.app.widgets.picture import Picture
from resnet_tui.app.widgets.tables import Table
from resnet_tui.display import percent, shown
from resnet_tui.runs.engine_jobs import EngineJob, EngineJobError
from resnet_tui.runs.mistakes import (
    ConfusedPair,
    MistakesError,
    Sample,
    TestPredictions,
    confused_pairs,
    per_class,
    read_test_predictions,
    sample,
)
from resnet_tui.runs.store import RunStore

# How many of the worst predictions and confused pairs the tables list.
WORST_SHOWN = 200
PAIRS_SHOWN = 50
TABS = ("worst", "pairs", "classes")
# While Grad-CAM is on, the cursor rests this long on an image before the engine is asked:
# moving down a list starts no engine for the images passed over.
HEAT_AFTER_S = 0.4


class MistakesScreen(Screen):
    """Where a finished run goes wrong on its test images (`resnet-tui mistakes RUN` in the
    app). Moving in a table shows the image; Enter on a pair lists its images; `g` lays
    Grad-CAM over the image: where the network saw the class it predicted."""

    BINDINGS = [
        Binding("escape", "back", "Back", id="mistakes.back"),
        Binding("t", "switch_tab", "Tabs", id="mistakes.tab"),
        Binding("g", "grad_cam", "Grad-CAM", id="mistakes.grad_cam"),
    ]

    def __init__(self, store: RunStore, run_id: int) -> None:
        super().__init__()
        self.store = store
        self.run_id = run_id
        self.predictions: TestPredictions | None = None
        self.pairs: list[ConfusedPair] = []  # the pairs table's rows
        self.pair: ConfusedPair | None = None  # the pair the worst list is narrowed to
        self.shown_sample: Sample | None = None
        self.folder = Path()  # the run's folder, once found
        self.heat_maps: dict[int, Path] = {}  # Grad-CAM pictures made, by test image
        self.showing_heat = False
        self.heat_timer: Timer | None = None  # waits for the cursor to rest before Grad-CAM
        self.heat_job: EngineJob | None = None  # the Grad-CAM the engine is making
        self.scratch = tempfile.TemporaryDirectory(prefix="resnet-tui-gradcam-")

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="mistakes-title")
        with Horizontal(id="mistakes-body"):
            with TabbedContent(id="mistakes-tabs"):
                with TabPane("Worst", id="worst"):
                    yield Table(id="worst-table", cursor_type="row", zebra_stripes=True)
                with TabPane("Confused pairs", id="pairs"):
                    yield Table(id="pairs-table", cursor_type="row", zebra_stripes=True)
                with TabPane("Per class", id="classes"):
                    yield Table(id="classes-table", cursor_type="row", zebra_stripes=True)
            with Vertical(id="mistakes-picture"):
                yield Static(id="picture-caption")
                yield Vertical(id="picture-frame")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.sub_title = f"run {self.run_id} · mistakes"
        self.query_one("#worst-table", Table).add_columns("#", "true", "predicted", "p", "loss")
        self.query_one("#pairs-table", Table).add_columns("true", "predicted as", "images")
        self.query_one("#classes-table", Table).add_columns(
            "class", "precision", "recall", "F1", "images"
        )
        run = self.store.run(self.run_id)
        if run is None:
            self.say(f"run {self.run_id} was deleted")
            return
        self.folder = run.folder
        self.say("reading the test predictions…")
        self.load(run.folder, run.status)

    def on_unmount(self) -> None:
        self.scratch.cleanup()

    def say(self, line: str) -> None:
        self.query_one("#mistakes-title", Static).update(shown(line))

    @work(thread=True, exclusive=True, group="load")
    def load(self, folder: Path, status: str) -> None:
        """Read the run's file off the app's thread (a forged one may be large)."""
        try:
            predictions = read_test_predictions(folder)
        except MistakesError as error:
            self.app.call_from_thread(self.say, str(error))
            return
        if predictions is None:
            why = (
                f"it is {status}"
                if status != "completed"
                else "it was trained before test predictions were kept"
            )
            self.app.call_from_thread(self.say, f"run {self.run_id} has no test predictions: {why}")
            return
        self.app.call_from_thread(self.show, predictions)

    def show(self, predictions: TestPredictions) -> None:
        self.predictions = predictions
        wrong = sum(1 for true, guess in predictions.pairs() if true != guess)
        total = len(predictions)
        right = (total - wrong) / max(total, 1)
        self.say(
            f"run {self.run_id}: {wrong:,} of {total:,} test images wrong ({percent(right)} right)"
        )
        self.fill_worst()
        pairs = self.query_one("#pairs-table", Table)
        names = predictions.classes
        self.pairs = confused_pairs(predictions, PAIRS_SHOWN)
        for pair in self.pairs:
            pairs.add_row(shown(names[pair.true]), shown(names[pair.predicted]), f"{pair.count:,}")
        classes = self.query_one("#classes-table", Table)
        for scores in per_class(predictions):
            classes.add_row(
                shown(scores.name),
                percent(scores.precision),
                percent(scores.recall),
                percent(scores.f1),
                f"{scores.support:,}",
            )
        self.query_one("#worst-table", Table).focus()

    def worst_indices(self) -> list[int]:
        """The test images the worst list shows: those of the chosen pair, or all of them,
        highest loss first."""
        predictions = self.predictions
        assert predictions is not None
        if self.pair is not None:
            return list(self.pair.samples[:WORST_SHOWN])
        every = range(len(predictions))
        return sorted(every, key=lambda i: (-predictions.loss[i], i))[:WORST_SHOWN]

    def fill_worst(self) -> None:
        predictions = self.predictions
        assert predictions is not None
        table = self.query_one("#worst-table", Table)
        table.clear()
        names = predictions.classes
        for index in self.worst_indices():
            found = sample(predictions, index)
            table.add_row(
                f"{index}",
                shown(names[found.true]),
                shown(names[found.predicted]),
                f"{100 * found.probability:.0f}%",
                f"{found.loss:.2f}",
                key=str(index),
            )
        tab = self.query_one("#mistakes-tabs", TabbedContent).get_tab("worst")
        if self.pair is None:
            tab.label = "Worst"
        else:
            tab.label = f"Worst: {names[self.pair.true]} → {names[self.pair.predicted]}"

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        predictions = self.predictions
        if predictions is None or event.row_key.value is None:
            return
        if event.data_table.id == "worst-table":
            self.show_sample(sample(predictions, int(event.row_key.value)))
        elif event.data_table.id == "pairs-table":
            pair = self.pairs[event.cursor_row]
            self.show_sample(sample(predictions, pair.samples[0]))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id != "pairs-table" or self.predictions is None:
            return
        self.pair = self.pairs[event.cursor_row]
        self.fill_worst()
        self.query_one("#mistakes-tabs", TabbedContent).active = "worst"
        self.query_one("#worst-table", Table).focus()

    def show_sample(self, found: Sample) -> None:
        """The sample's picture (or its Grad-CAM, while that is on) and what it is."""
        predictions = self.predictions
        assert predictions is not None
        self.shown_sample = found
        names = predictions.classes
        source = f" ({Path(found.source).name})" if found.source else ""
        caption = (
            f"test image {found.index}{source}: {names[found.true]}, predicted "
            f"{names[found.predicted]} ({100 * found.probability:.0f}%)"
        )
        heat = self.heat_maps.get(found.index) if self.showing_heat else None
        if heat is not None:
            caption += " · Grad-CAM of the prediction: red where its evidence is strongest"
        elif self.showing_heat and self.start_grad_cam(found):
            caption += " · Grad-CAM: the engine is at work…"
        path = heat or found.image
        if path is None:
            caption += " · no picture kept (only the worst images and some of each pair are)"
        self.query_one("#picture-caption", Static).update(shown(caption))
        frame = self.query_one("#picture-frame", Vertical)
        frame.remove_children()
        if path is not None:
            frame.mount(Picture(path))

    def action_back(self) -> None:
        """Leave the chosen pair first, then the screen."""
        if self.pair is not None and self.predictions is not None:
            self.pair = None
            self.fill_worst()
            return
        self.app.pop_screen()

    def action_switch_tab(self) -> None:
        tabs = self.query_one("#mistakes-tabs", TabbedContent)
        tabs.active = TABS[(TABS.index(tabs.active) + 1) % len(TABS)]
        tabs.query_one(f"#{tabs.active}-table", Table).focus()

    def action_grad_cam(self) -> None:
        """Grad-CAM over the images in view, on or off: while on, each image the cursor rests
        on gets its own (made by the engine once, kept for the screen's life)."""
        self.showing_heat = not self.showing_heat
        if self.shown_sample is not None:
            self.show_sample(self.shown_sample)

    def start_grad_cam(self, found: Sample) -> bool:
        """Ask the engine for the sample's Grad-CAM once the cursor rests on it; False where
        no picture of it is there to look into."""
        image = Path(found.source) if found.source and Path(found.source).is_file() else found.image
        if image is None:
            return False
        if self.heat_timer is not None:
            self.heat_timer.stop()
        self.heat_timer = self.set_timer(HEAT_AFTER_S, lambda: self.grad_cam(found, image))
        return True

    @work(thread=True, exclusive=True, group="grad-cam")
    def grad_cam(self, found: Sample, image: Path) -> None:
        if self.predictions is None:
            return
        out = Path(self.scratch.name) / f"{found.index}.png"
        target = self.predictions.classes[found.predicted]
        if self.heat_job is not None:  # the image before: the cursor has moved on
            self.heat_job.stop()
        job = EngineJob(
            "gradcam",
            [
                f"--checkpoint={self.folder / 'checkpoints' / 'best.pt'}",
                f"--run={self.run_id}",
                f"--image={image}",
                f"--target={target}",
                f"--out={out}",
            ],
        )
        self.heat_job = job
        worker = get_current_worker()
        try:
            for _ in job.lines():
                if worker.is_cancelled:
                    break
        except EngineJobError as error:
            if not worker.is_cancelled:  # else stopped for the next image: nothing to say
                self.app.call_from_thread(self.grad_cam_failed, found, error.message)
            return
        finally:
            job.stop()
        if out.is_file() and not worker.is_cancelled:
            self.app.call_from_thread(self.grad_cam_done, found, out)

    def grad_cam_done(self, found: Sample, out: Path) -> None:
        self.heat_maps[found.index] = out
        shown_now = self.shown_sample is not None and self.shown_sample.index == found.index
        if shown_now and self.showing_heat:
            self.show_sample(found)

    def grad_cam_failed(self, found: Sample, message: str) -> None:
        """Say why, and turn Grad-CAM off: the next image would fail the same way."""
        self.app.tell(f"Grad-CAM: {message}", severity="error")
        self.showing_heat = False
        if self.shown_sample is not None and self.shown_sample.index == found.index:
            self.show_sample(found)
