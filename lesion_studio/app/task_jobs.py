"""Evaluate and export jobs for the GUI job manager: the same engines the headless
`lesion-studio evaluate` and `lesion-studio batch` commands run, as cancellable tasks.
`force=True` is the commands' `--force` (claim a non-empty folder lesion-studio did not make)."""

from __future__ import annotations

from pathlib import Path

from lesion_studio.app.job_manager import JobContext


def evaluate_task(config_path: str | Path, force: bool = False):
    """A job task running the downstream experiment of `config_path` (resumes finished folds)."""

    def task(ctx: JobContext) -> None:
        from lesion_studio.models.experiments import ExperimentCancelled, load_experiment_config, run_experiment

        config = load_experiment_config(config_path)
        ctx.set_out_dir(config.out_dir)
        ctx.log(f"experiment {config_path} -> {config.out_dir}")

        def progress(event) -> None:
            line = f"{event.stage} {event.condition} fold {event.fold}"
            if event.message:
                line += f": {event.message}"
            ctx.log(line)
            ctx.progress(event.done_units, event.total_units)

        try:
            run_experiment(config, progress=progress, cancel=lambda: ctx.cancelled, force=force)
        except ExperimentCancelled:
            ctx.log("cancelled: finished folds are kept and skipped when the job runs again")
            return
        ctx.log(f"results: {Path(config.out_dir) / 'results.json'}")

    return task


def batch_export_task(config_path: str | Path, device: str = "cpu", force: bool = False):
    """A job task running the batch export of `config_path`; every output is atomic, so a
    cancelled export resumes where it stopped when run again."""

    def task(ctx: JobContext) -> None:
        from lesion_studio.core.export.config import load_batch_config
        from lesion_studio.models.batch_export import BatchCancelled, run_batch

        config = load_batch_config(config_path)
        ctx.set_out_dir(config.output_dir)
        ctx.log(f"batch export {config_path} -> {config.output_dir}")
        log = _LogWriter(ctx)
        try:
            result = run_batch(config, device=device, show_progress=False, stdout=log, log=log,
                               progress=ctx.progress, cancel=lambda: ctx.cancelled, force=force)
        except BatchCancelled as exc:
            ctx.log(f"{exc}: finished images are kept; running the job again completes the set")
            return
        ctx.log(f"done: {result.done} written, {result.skipped} already done, {len(result.failures)} failed")

    return task


class _LogWriter:
    """A text stream that forwards whole lines to the job log."""

    def __init__(self, ctx: JobContext) -> None:
        self.ctx = ctx
        self._buffer = ""

    def write(self, text: str) -> int:
        self._buffer += text
        while "\n" in self._buffer:
            line, self._buffer = self._buffer.split("\n", 1)
            if line.strip():
                self.ctx.log(line)
        return len(text)

    def flush(self) -> None:
        pass
