"""Training progress events, the cancel token, and a console bar that consumes the events.

The trainer calls one callback with these frozen dataclasses; the GUI job manager and the
console bar (`ConsoleProgress`, tqdm) are two consumers of the same stream.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass, field
from typing import Callable, Union

import numpy as np


#: What a training does before its first step reports (PhaseEvent.phase), in order.
PHASES = ("preparing data", "building model", "first step")


@dataclass(frozen=True)
class PhaseEvent:
    """The training started a phase that may take long before any step is reported."""

    phase: str  # one of PHASES


@dataclass(frozen=True)
class TrainStarted:
    family: str
    total_steps: int
    start_step: int
    device: str
    world_size: int
    n_train: int
    n_val: int


@dataclass(frozen=True)
class StepEvent:
    """One logged step: every loss term, learning rates, speed and the estimated time left."""

    step: int
    total_steps: int
    losses: dict[str, float]
    lr: dict[str, float]
    it_per_s: float
    images_per_s: float
    eta_s: float


@dataclass(frozen=True)
class ValidationEvent:
    step: int
    metrics: dict[str, float]
    is_best: bool
    criterion: str = ""  # what `is_best` was judged by (models/selection.py); "": no selection


@dataclass(frozen=True, eq=False)
class SampleEvent:
    """Sample images `(N, H, W)` float32 in [-1, 1]: per row input, generated, target."""

    step: int
    images: np.ndarray
    titles: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class CheckpointEvent:
    step: int
    path: str
    reason: str  # periodic | best | cancel | final


@dataclass(frozen=True)
class NoteEvent:
    """Something the user should know about this run that is no loss or metric, e.g.
    "FID/KID unavailable: <reason>" (written to the console and the job log)."""

    text: str


@dataclass(frozen=True)
class TrainFinished:
    step: int
    cancelled: bool
    checkpoint: str
    best_checkpoint: str | None
    best_metrics: dict[str, float]
    selection: dict = field(default_factory=dict)  # Selection.summary: criterion, best_step, best_value, ...


Event = Union[PhaseEvent, TrainStarted, StepEvent, ValidationEvent, SampleEvent, CheckpointEvent, NoteEvent,
              TrainFinished]
Callback = Callable[[Event], None]


class CancelToken:
    """Thread-safe flag: `cancel()` from the GUI; the trainer stops at the next step boundary."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


def format_duration(seconds: float) -> str:
    if not np.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h:d}:{m:02d}:{s:02d}" if h else f"{m:d}:{s:02d}"


def format_rate(it_per_s: float | None) -> str:
    """A training speed as people read it: "3.2 it/s", or "87.0 s/it" when slower than 1 it/s."""
    if it_per_s is None or not np.isfinite(it_per_s) or it_per_s <= 0:
        return "? it/s"
    if it_per_s >= 1.0:
        return f"{it_per_s:.1f} it/s"
    return f"{1.0 / it_per_s:.1f} s/it"


def step_line(event: StepEvent) -> str:
    """One log line of a step: counter, every loss term, rate and ETA."""
    losses = " ".join(f"{k} {v:.4g}" for k, v in event.losses.items())
    return (f"step {event.step}/{event.total_steps} · {losses} · {format_rate(event.it_per_s)} · "
            f"ETA {format_duration(event.eta_s)}")


class ConsoleProgress:
    """A tqdm bar on a terminal, fed by the events; plain lines, one per event, otherwise
    (a pipe, a file, the GUI's job log), so each line is complete the moment it happens."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stderr
        self._bar = None
        isatty = getattr(self.stream, "isatty", None)
        self.plain = not (callable(isatty) and isatty())

    def __call__(self, event: Event) -> None:
        if self.plain:
            self._plain(event)
            return
        from tqdm import tqdm

        if isinstance(event, PhaseEvent):
            self._write(f"{event.phase}…")
        elif isinstance(event, TrainStarted):
            self._bar = tqdm(
                total=event.total_steps, initial=event.start_step, file=self.stream,
                desc=f"{event.family} ({event.device}, x{event.world_size})", unit="it", dynamic_ncols=True,
            )
        elif isinstance(event, StepEvent) and self._bar is not None:
            self._bar.n = event.step
            self._bar.set_postfix({k: f"{v:.4g}" for k, v in event.losses.items()}, refresh=False)
            self._bar.refresh()
        elif isinstance(event, ValidationEvent):
            text = ", ".join(f"{k} {v:.4g}" for k, v in event.metrics.items())
            self._write(f"step {event.step}: validation {text}{' (best)' if event.is_best else ''}")
        elif isinstance(event, CheckpointEvent):
            self._write(f"step {event.step}: {event.reason} checkpoint {event.path}")
        elif isinstance(event, NoteEvent):
            self._write(event.text)
        elif isinstance(event, TrainFinished):
            if self._bar is not None:
                self._bar.n = event.step
                self._bar.close()
            self._write(("cancelled" if event.cancelled else "finished") + f" at step {event.step}: {event.checkpoint}")

    def _plain(self, event: Event) -> None:
        if isinstance(event, PhaseEvent):
            text = f"{event.phase}…"
        elif isinstance(event, TrainStarted):
            text = (f"training {event.family} on {event.device} x{event.world_size}: steps {event.start_step}"
                    f"→{event.total_steps}, {event.n_train} train / {event.n_val} validation patches")
        elif isinstance(event, StepEvent):
            text = step_line(event)
        elif isinstance(event, ValidationEvent):
            metrics = ", ".join(f"{k} {v:.4g}" for k, v in event.metrics.items())
            text = f"step {event.step}: validation {metrics}{' (best)' if event.is_best else ''}"
        elif isinstance(event, CheckpointEvent):
            text = f"step {event.step}: {event.reason} checkpoint {event.path}"
        elif isinstance(event, NoteEvent):
            text = event.text
        elif isinstance(event, TrainFinished):
            text = ("cancelled" if event.cancelled else "finished") + f" at step {event.step}: {event.checkpoint}"
        else:
            return
        self.stream.write(text + "\n")
        self.stream.flush()

    def _write(self, text: str) -> None:
        from tqdm import tqdm

        tqdm.write(text, file=self.stream)
