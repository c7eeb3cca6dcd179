"""Progress on long work: `harness train`'s bar over epochs and batches, and what the sweep's
progress (`harness.sweep.progress`) shares with it.

A bar (tqdm) is drawn only when the stream is a terminal. Otherwise the output stays plain
lines, one per message, so that logs and pipes read as before. Every message printed while a
bar is shown goes through `write`, which clears the bars, prints the line above them and draws
them again.
"""

from __future__ import annotations

import sys
from typing import IO, Any

from tqdm import tqdm


def is_terminal(stream: IO[str] | None) -> bool:
    """Whether `stream` is an open terminal (a closed or detached stream is not)."""
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):
        return False


def write(message: str, stream: IO[str] | None = None) -> None:
    """Prints `message` as one line on `stream` (default: stderr) above any bar shown on it.

    tqdm's lock and its list of bars are per process, so any code of the driver can call this
    without holding the object that draws a bar.
    """
    stream = stream if stream is not None else sys.stderr
    tqdm.write(message, file=stream)
    stream.flush()


def format_duration(seconds: float) -> str:
    """`45 s`, `3 min`, `1 h 05 min`: precise enough for an estimate."""
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = int(seconds / 60 + 0.5)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


class TrainProgress:
    """`harness train`'s progress: one bar over every batch of every epoch on a terminal.

    `batch(epoch, done, batches)` is the trial's per-batch hook (`harness.trial.train`'s
    `on_batch`); `write` is its `log`. When the stream is not a terminal there is no bar:
    `on_batch` is None and `write` prints each message as one line, as `harness train` did
    before (one line per epoch).

    Args:
        epochs: Epochs of the trial (`train.epochs`).
        label: What trains, e.g. the method's name (`kd epoch 2/3` on the bar).
        stream: Where to draw (default: stderr).
        live: Draw a bar (default: whether `stream` is a terminal).
    """

    def __init__(self, epochs: int, *, label: str, stream: IO[str] | None = None, live: bool | None = None) -> None:
        self.epochs, self.label = epochs, label
        self.stream = stream if stream is not None else sys.stderr
        self.live = is_terminal(self.stream) if live is None else live
        self._bar: Any = None

    @property
    def on_batch(self) -> Any:
        """The hook to hand to `train(on_batch=...)`: `batch` with a bar, None without."""
        return self.batch if self.live else None

    def batch(self, epoch: int, done: int, batches: int) -> None:
        """After step `done` of `batches` in `epoch`: moves the bar (total: epochs x batches)."""
        if not self.live:
            return
        description = f"{self.label} epoch {epoch}/{self.epochs}"
        if self._bar is None:
            self._bar = tqdm(
                desc=description,
                total=self.epochs * batches,
                initial=(epoch - 1) * batches,  # a resumed trial starts after its saved epochs
                file=self.stream,
                unit="batch",
                dynamic_ncols=True,
                leave=False,
                mininterval=0.2,
            )
        self._bar.set_description_str(description, refresh=False)
        self._bar.n = (epoch - 1) * batches + done  # absolute: survives a changed batch count
        self._bar.update(0)

    def write(self, message: str) -> None:
        """A progress message (the trial's `log`): one line, above the bar if there is one."""
        if self.live:
            write(message, self.stream)
        else:
            print(message, file=self.stream, flush=True)

    def close(self) -> None:
        """Removes the bar (the final evaluation and the summary table follow)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> TrainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
