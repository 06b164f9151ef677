"""Files the commands write: checked before the work, then written whole or not at all.

A command checks its outputs before any model loads, since an output that cannot be written, or that is
one of its inputs, would otherwise fail (or destroy the input) only after the work. Each output is then
written through `atomic_output`: to a temporary file beside it, moved into place when complete, so a full
disk, an error or Ctrl-C never leaves a truncated file under the real name, and an older file survives.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from stepaudio.errors import OptionError

PathLike = str | os.PathLike


def check_output(path: PathLike, inputs: Iterable[PathLike | None] = ()) -> Path:
    """`path` if a file can be written there and it is none of `inputs` (None: an option not given)."""
    path = Path(path)
    for source in inputs:
        if source is not None and _same_file(path, source):
            raise OptionError(f"{path} is also an input; name another output, so the input is not overwritten")
    if path.is_dir():
        raise OptionError(f"{path} is a folder; name a file in it")
    if not path.parent.is_dir():
        raise OptionError(f"{path}: the folder {path.parent} does not exist")
    _reserve_temp(path).unlink()  # a real write: permission bits do not stop root, a read-only disk stops all
    return path


def note_replacing(*paths: Path) -> None:
    """One line on stderr naming the existing files a command will replace, so it is not done silently."""
    existing = [str(path) for path in paths if path.exists()]
    if existing:
        print(f"stepaudio: replacing {', '.join(existing)}", file=sys.stderr)


@contextmanager
def atomic_output(path: PathLike) -> Iterator[Path]:
    """A temporary file beside `path` to write to: it replaces `path` when the block ends, and is removed
    when the block raises, so `path` is never left truncated and an older file stays intact."""
    path = Path(path)
    temp = _reserve_temp(path)
    try:
        yield temp
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def write_file(path: PathLike, data: bytes) -> None:
    """`data` written to `path` whole or not at all (`atomic_output`), a failure said in one line."""
    with atomic_output(path) as temp:
        try:
            temp.write_bytes(data)
        except OSError as error:
            raise write_failure(path, error.strerror or str(error)) from error


def write_failure(path: PathLike, reason: str) -> OptionError:
    """The error for an output that could not be written to its end, for the user to free some space."""
    return OptionError(f"{path} could not be written to its end ({reason}); is the disk full?")


def _reserve_temp(path: Path) -> Path:
    """A new empty hidden file beside `path`, with its extension (writers choose the format from it) and the
    permissions a new file would get (the umask applies)."""
    temp = path.with_name(f".{path.stem}.{secrets.token_hex(4)}.partial{path.suffix}")
    try:
        os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as error:
        raise OptionError(f"{path}: cannot write in the folder {path.parent} ({error.strerror})") from error
    return temp


def _same_file(output: Path, source: PathLike) -> bool:
    """Whether writing `output` would overwrite `source`: the same file (a link to it too), or the same path."""
    try:
        return os.path.samefile(output, source)
    except OSError:  # one of them does not exist (yet)
        return output.resolve() == Path(source).resolve()
