"""State files written whole or not at all, and read back whole or refused.

Every file the harness keeps between runs (a sweep's `plan.json` and `choices.json`, a trial's
checkpoints, a cached teacher and its noise accuracies) is written to a temporary file beside
it and renamed into place (`os.replace` is atomic on one file system), so a reader never sees
half a file, even after a kill in the middle of a write. A file that is damaged all the same
(a disk error, a hand edit) is refused when it is read, in one line naming it and the way out
(`DamagedState`), never read as if it were empty.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.errors import HarnessInputError

FRESH_START = "start the sweep under another name (`name:` in the file, or --set name=...) or with a fresh --storage"
"""The way out of a sweep folder whose state is damaged."""


class DamagedState(HarnessInputError):
    """A state file that does not read back whole: bad input (exit 2), naming the file and the way out."""


def check_writable_folder(folder: Path) -> None:
    """Checks that `folder` can be made (if missing) and take files, writing nothing that stays:
    the folders it makes to find out are removed again, and so is the file it writes.

    Raises:
        OSError: it cannot (its `strerror` says why).
    """
    missing = []
    probe = folder
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        scratch = folder / f".harness-write-check.{os.getpid()}"
        scratch.write_text("")
        scratch.unlink()
    finally:
        for made in missing:  # deepest first; one never made (or no longer empty) stays
            try:
                made.rmdir()
            except OSError:
                continue


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Calls `write(scratch)` on a temporary file beside `path`, then renames it to `path`; if
    `write` or the rename fails, `path` is as it was and the scratch file is gone."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(scratch)
        os.replace(scratch, path)
    finally:
        scratch.unlink(missing_ok=True)


def write_text_atomically(path: Path, text: str) -> None:
    """`path` holds `text`, written whole (`write_atomically`)."""
    write_atomically(path, lambda scratch: scratch.write_text(text))


def write_json_atomically(path: Path, value: Any) -> None:
    """`path` holds `value` as indented, sorted JSON, written whole."""
    write_text_atomically(path, json.dumps(value, indent=1, sort_keys=True))


def read_json(path: Path, what: str, way_out: str = FRESH_START) -> Any:
    """The JSON value in `path` (`what` names it in a message: "the sweep's plan").

    Raises:
        DamagedState: the file cannot be read or is not whole JSON.
    """
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise DamagedState(f"{path}: {what} is damaged ({reason}); {way_out}") from None
