"""An image file drawn in the terminal: Kitty graphics or Sixel where the terminal has them,
coloured half-blocks everywhere else (any terminal, over SSH, in tmux).

Half-blocks are drawn here: each cell's upper half takes one pixel's colour as its
foreground (`▀`), its lower half the next row's as its background, so a cell holds two
square pixels. The graphics protocols come from textual-image, whose import asks the
terminal what it supports and waits for the answer: that cannot happen while Textual reads
the keyboard, so it is imported once, the first time a picture is shown, with the app
suspended for that moment; and only where the terminal says it may draw graphics
(`graphics_wanted`), so other terminals never see the app leave the screen.
"""

import os
import sys
from pathlib import Path
from typing import Any

from rich.color import Color
from rich.segment import Segment
from rich.style import Style
from textual.app import ComposeResult, SuspendNotSupported
from textual.containers import Container
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Static

# RESNET_TUI_IMAGES chooses the drawing: `halfblocks`, `graphics`, or `auto` (the default:
# graphics in terminals known to draw them, half-blocks elsewhere).
IMAGES_VARIABLE = "RESNET_TUI_IMAGES"
GRAPHICS_TERMINALS = ("kitty", "wezterm", "ghostty", "iterm.app", "konsole", "foot", "mlterm")
# An image file larger than this is not decoded for a picture (a decompression bomb).
MOST_PIXELS = 50_000_000


def graphics_wanted(environment: dict[str, str] | None = None) -> bool:
    """Whether pictures try the Kitty or Sixel protocol: asked for, or a terminal known to
    draw them (and not inside tmux or screen, which pass them on only when configured)."""
    env = os.environ if environment is None else environment
    choice = env.get(IMAGES_VARIABLE, "auto").strip().lower()
    if choice in ("halfblocks", "graphics"):
        return choice == "graphics"
    if env.get("TMUX") or env.get("TERM", "").startswith("screen"):
        return False
    names = " ".join(env.get(key, "") for key in ("TERM", "TERM_PROGRAM", "LC_TERMINAL")).lower()
    return bool(env.get("KITTY_WINDOW_ID")) or any(name in names for name in GRAPHICS_TERMINALS)


def load_pixels(path: Path, width: int, height: int) -> Any:
    """The image at `path` fitted into `width` x `height` pixels (aspect kept), as an RGB
    PIL image; OSError or ValueError where it cannot be read."""
    from PIL import Image

    with Image.open(path) as image:
        if image.width * image.height > MOST_PIXELS:
            raise ValueError(f"{image.width}x{image.height} pixels is too large to show")
        image.draft("RGB", (width, height))  # JPEG decodes at a fraction of its size
        picture = image.convert("RGB")
    scale = min(width / picture.width, height / picture.height)
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    resample = Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.LANCZOS
    return picture.resize(size, resample)


def half_block_strips(picture: Any, width: int) -> list[Strip]:
    """Rows of half-block cells drawing `picture` (an RGB PIL image), centred in `width`."""
    pixels = picture.load()
    columns, rows = picture.size
    left = max(0, (width - columns) // 2)
    strips = []
    for top in range(0, rows, 2):
        segments = [Segment(" " * left)] if left else []
        for x in range(columns):
            upper = Color.from_rgb(*pixels[x, top])
            lower = Color.from_rgb(*pixels[x, top + 1]) if top + 1 < rows else None
            segments.append(Segment("▀", Style(color=upper, bgcolor=lower)))
        strips.append(Strip(segments, left + columns))
    return strips


class HalfBlockPicture(Widget):
    """An image file drawn with half-blocks, fitted to the widget and redrawn on resize."""

    DEFAULT_CSS = "HalfBlockPicture { width: 1fr; height: 1fr; }"

    def __init__(self, path: Path, **options: Any) -> None:
        super().__init__(**options)
        self.path = path
        self._strips: list[Strip] = []
        self._drawn_for: tuple[int, int] | None = None

    def _draw(self) -> None:
        width, height = self.size
        if (width, height) == self._drawn_for or width < 1 or height < 1:
            return
        self._drawn_for = (width, height)
        try:
            self._strips = half_block_strips(load_pixels(self.path, width, 2 * height), width)
        except (OSError, ValueError, SyntaxError) as error:  # PIL's parsers raise all three
            reason = " ".join(str(error).split()) or type(error).__name__
            self._strips = [Strip([Segment(f"cannot show {self.path.name}: {reason}")])]

    def render_line(self, y: int) -> Strip:
        self._draw()
        return self._strips[y] if y < len(self._strips) else Strip.blank(self.size.width)


class Picture(Container):
    """An image file as well as the terminal can draw it (see the module's docstring)."""

    DEFAULT_CSS = "Picture { width: 1fr; height: 1fr; }"

    def __init__(self, path: Path, **options: Any) -> None:
        super().__init__(**options)
        self.path = path

    def compose(self) -> ComposeResult:
        graphics = _graphics_widget(self)
        if graphics is not None:
            yield graphics(self.path)
        elif self.path.is_file():
            yield HalfBlockPicture(self.path)
        else:
            yield Static(f"{self.path.name} is not there any more", markup=False)


def _graphics_widget(widget: Widget) -> Any:
    """textual-image's widget where the terminal draws Kitty or Sixel graphics, else None."""
    if not graphics_wanted() or not sys.__stdout__ or not sys.__stdout__.isatty():
        return None
    if "textual_image.widget" not in sys.modules:
        try:
            with widget.app.suspend():  # the terminal answers textual-image, not Textual
                import textual_image.widget  # noqa: F401
        except (SuspendNotSupported, ImportError, OSError):  # a web or headless driver
            return None
    from textual_image import renderable
    from textual_image import widget as image_widgets

    if renderable.Image is renderable.HalfcellImage or renderable.Image is renderable.UnicodeImage:
        return None  # the terminal answered that it draws neither
    return image_widgets.Image
