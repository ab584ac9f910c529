"""The image files a command line names: files, folders searched through, and globs.

A file named is taken whatever its name (a file that is no image is reported by whoever
reads it); a folder gives the image files under it, at any depth, hidden ones passed over,
and what else it holds counted as skipped (other names, `.gif` among them as for training
folders, and what is no file: a pipe, a link to a device or to nothing, a folder that cannot
be read); a path that is not there but holds `*`, `?` or `[` is a glob the shell did not
expand.
"""

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path

from engine.contract.errors import RunError
from engine.contract.locate import IMAGE_EXTENSIONS

GLOB_CHARACTERS = ("*", "?", "[")
# How many of the things skipped in folders are named as examples.
SKIPPED_EXAMPLES = 5


@dataclass
class FoundImages:
    """The image files found, and how many things in the folders searched were skipped."""

    files: list[Path]
    skipped: int = 0
    skipped_examples: list[Path] = field(default_factory=list)


@dataclass
class _Skipped:
    """What folder searches passed over, each once, in the order met."""

    paths: dict[Path, Path] = field(default_factory=dict)

    def add(self, path: Path) -> None:
        self.paths.setdefault(Path(os.path.abspath(path)), path)


def image_files(paths: list[Path]) -> FoundImages:
    """The image files `paths` name, sorted, each once (a file reached twice, by two paths
    or through a link, is kept under the first path it was reached by), and what folders
    held that is not taken (hidden files and folders aside).

    A RunError (bad_input) for a path that is not there, a glob that matches nothing, a
    path that is neither a file nor a folder, or when no image file is found at all."""
    found: dict[Path, Path] = {}
    skipped = _Skipped()
    for given in paths:
        for path in _expanded(given):
            if path.is_dir():
                files = _folder_images(path, skipped)
            elif path.is_file():
                files = [path]
            else:
                raise RunError(
                    "bad_input",
                    f"{path} is neither a file nor a folder",
                    "give image files, or folders holding them",
                )
            for file in files:
                found.setdefault(file.resolve(), file)
    if not found:
        named = ", ".join(str(path) for path in paths[:3]) + (" ..." if len(paths) > 3 else "")
        raise RunError(
            "bad_input",
            f"no image files in {named}",
            f"give image files ({', '.join(IMAGE_EXTENSIONS[:4])} ...) or folders holding them",
        )
    examples = list(skipped.paths.values())[:SKIPPED_EXAMPLES]
    return FoundImages(sorted(found.values(), key=str), len(skipped.paths), examples)


def _expanded(given: Path) -> list[Path]:
    """The path itself, or what it matches where it is a glob."""
    if given.exists() or given.is_symlink():
        return [given]
    text = str(given)
    if any(character in text for character in GLOB_CHARACTERS):
        matches = sorted(glob.glob(text, recursive=True))
        if not matches:
            raise RunError("bad_input", f"no files match {text}", "check the pattern")
        return [Path(match) for match in matches]
    raise RunError("bad_input", f"{text} is not there", "check the path")


def _folder_images(folder: Path, skipped: _Skipped) -> list[Path]:
    """The image files under `folder`, at any depth, hidden files and folders passed over;
    what else is there goes to `skipped`: other names, anything that is no file (a pipe
    would wait for ever), links to folders (not followed) and folders that cannot be read."""
    files = []

    def unreadable(error: OSError) -> None:
        skipped.add(Path(error.filename or folder))

    for root, folders, names in os.walk(folder, onerror=unreadable):
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        for name in [name for name in folders if os.path.islink(os.path.join(root, name))]:
            skipped.add(Path(root, name))  # os.walk does not go through links
        for name in sorted(names):
            if name.startswith("."):
                continue
            path = Path(root, name)
            if name.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(path):
                files.append(path)
            else:
                skipped.add(path)
    return files
