"""The complete lines of a log that may still be written to, read by chunks from a byte offset,
holding no more of any line than a bound (a longer line is damage, passed on by its length)."""

from collections.abc import Callable
from typing import BinaryIO

CHUNK = 2**20


def read_lines(
    file: BinaryIO,
    offset: int,
    end: int | None,
    final: bool,
    longest: int,
    take: Callable[[bytes, int, int], None],
) -> int:
    """Call `take(line, start, length)` for each complete line after byte `offset` (up to
    byte `end`), in order: the line without its newline, where it starts and its length; a
    line longer than `longest` bytes comes as b"" with its length. A last line without its
    newline is left for the next read unless the read is `final`. Returns where to read on."""
    file.seek(offset)
    line, length, start, position = bytearray(), 0, offset, offset  # the line gathered
    while end is None or position < end:
        chunk = file.read(CHUNK if end is None else min(CHUNK, end - position))
        if not chunk:
            break
        position += len(chunk)
        *whole, tail = chunk.split(b"\n")
        for piece in whole:
            length += len(piece)
            take(bytes(line + piece) if length <= longest else b"", start, length)
            start += length + 1
            line, length = bytearray(), 0
        length += len(tail)
        line += tail if length <= longest else b""
    if final and length:
        take(bytes(line), start, length)
        return start + length
    return start
