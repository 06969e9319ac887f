"""Training checkpoints in the MLflow run's own artifact storage (`checkpoints/epoch-0003.pt`).

Saved every `train.checkpoint_every` epochs, and at least `train.checkpoint_seconds` apart (an epoch due sooner is
skipped; the last epoch's state is written when training ends, by `finish()`), with everything a resume needs:
model, optimizer, scheduler, the shuffling generator and torch RNG, early-stopping book-keeping, the epoch and the
history. The newest `keep` are kept; loading tries the newest first and falls back to an older one if it is
unreadable. A checkpoint of a large network costs tens of milliseconds (a copy of the state, then its write):
written every epoch, that was most of what a training epoch cost beyond the bare loop.

When the run's artifacts are a local folder (the default sqlite store keeps them in `mlruns/artifacts/`), the
checkpoint is written there directly, under a temporary name renamed into place (a kill never leaves half a
file, and there is no second copy); other artifact stores go through MLflow's artifact API. The write happens in
a background thread on a copy of the state, so training goes on meanwhile; at most one write is in flight, and
`wait()` (called by `latest()` and at the end of training) waits for it.
"""
from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Optional
from urllib.parse import urlparse
from urllib.request import url2pathname

from tasks.paths import CHECKPOINT_DIR
from tasks.train.observers import notify

FOLDER = "checkpoints"
_NAME = re.compile(r"epoch-(\d+)\.pt$")

log = logging.getLogger("fuseflow")


def checkpoint_name(epoch: int) -> str:
    return f"epoch-{epoch:04d}.pt"


def finish_training(result: Any, logger: Any, checkpoint: Any = None) -> None:
    """Wait for the last checkpoint write, then log the training summary (best epoch, epochs run, throughput)."""
    if hasattr(checkpoint, "wait"):
        checkpoint.wait()  # the last checkpoint is written before the step ends
    if logger:
        result.run_id = getattr(logger, "run_id", None)
        logger.log_metrics({"best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
                            "train_samples_per_s": result.train_samples_per_s})


def epoch_hooks(logger: Any, checkpoint: Any = None, resume: Optional[dict[str, Any]] = None,
                progress: Optional[Callable[[int, dict, dict], Any]] = None,
                ) -> tuple[Callable[[int, dict, dict], None], Optional[dict]]:
    """A training step's `on_epoch_end` (metrics to the run at step = epoch, state to `checkpoint`, the epoch's
    line to `progress`, an `EpochLog`, then the installed observer) and the state to resume from: `resume`, else
    `checkpoint.latest()` (a Prefect retry, or `--resume` of a run)."""
    resume = resume_state(checkpoint, resume)
    logged = last_logged_epoch(logger)  # a resume reruns the epochs after its checkpoint: log each epoch once

    def on_epoch_end(epoch: int, metrics: dict[str, float], state: dict[str, Any]) -> None:
        if logger and epoch > logged:
            logger.log_metrics(metrics, step=epoch)
        if checkpoint:
            checkpoint(epoch, state)
        if progress is not None:
            progress(epoch, metrics, state)  # the run's log line, before a pruner may stop the trial
        notify(epoch, metrics)  # a sweep's pruner may stop the trial here, its epochs logged and checkpointed

    on_epoch_end.finish = getattr(checkpoint, "finish", lambda: None)  # type: ignore[attr-defined]
    return on_epoch_end, resume


def resume_state(checkpoint: Any = None, resume: Optional[dict[str, Any]] = None) -> Optional[dict[str, Any]]:
    """The state a training step starts from: `resume`, else the newest checkpoint of the run, else None."""
    if resume is None and checkpoint is not None and hasattr(checkpoint, "latest"):
        return checkpoint.latest()
    return resume


def last_logged_epoch(logger: Any, metric: str = "val_loss") -> int:
    """The last epoch whose metrics the run already holds (0 for a new run, or without a logger)."""
    if not logger or not hasattr(logger, "client"):
        return 0
    try:
        return max((m.step for m in logger.client.get_metric_history(logger.run_id, metric)), default=0)
    except Exception:  # noqa: BLE001 - no such metric yet
        return 0


def trainer_folder(checkpoint: Any) -> Optional[Path]:
    """Where `backend: hf_trainer` keeps its own checkpoint folders for `checkpoint`'s run: `checkpoints/hf-trainer`
    in the run's artifacts when they are local files, else `.fuseflow/checkpoints/<run_id>`; None without a run."""
    if checkpoint is None or not getattr(checkpoint, "every", 0) or not hasattr(checkpoint, "local_folder"):
        return None
    local = checkpoint.local_folder()
    if local is not None:
        return local / "hf-trainer"
    return CHECKPOINT_DIR / checkpoint.logger.run_id


class Checkpointer:
    """`on_epoch_end`-style callable `(epoch, state)` that saves into one MLflow run; `latest()` loads back."""

    def __init__(self, logger: Any, every: int = 1, keep: int = 2, min_seconds: float = 0.0) -> None:
        self.logger = logger
        self.every = every
        self.keep = max(1, keep)
        self.min_seconds = min_seconds
        self._last_write: Optional[float] = None  # monotonic time of the last checkpoint started
        self._pending: Optional[tuple[int, dict[str, Any]]] = None  # a due epoch skipped for min_seconds
        self._saved: Optional[list[int]] = None  # epochs saved in the run (read once, then kept up to date)
        self._artifact_uri: Optional[str] = None
        self._writer: Optional[threading.Thread] = None
        self._error: Optional[BaseException] = None

    def __call__(self, epoch: int, state: dict[str, Any]) -> None:
        import time

        if not self.every or epoch % self.every:
            return
        now = time.monotonic()
        if self.min_seconds and self._last_write is not None and now - self._last_write < self.min_seconds:
            self._pending = (epoch, state)  # no copy: `finish()` writes it once training has stopped changing it
            return
        if self.min_seconds and self._last_write is None:
            self._last_write = now  # the first checkpoint comes `min_seconds` into training
            self._pending = (epoch, state)
            return
        self._pending, self._last_write = None, now
        snapshot = _snapshot(state)  # training changes the live tensors while the copy is written
        self.wait()
        if self._saved is None:
            self._saved = self.saved_epochs()
        self.local_folder()  # resolve the run's artifact location here, not in the writer thread
        self._writer = threading.Thread(target=self._write_safely, args=(epoch, snapshot),
                                        name="fuseflow-checkpoint", daemon=False)
        self._writer.start()

    def finish(self) -> None:
        """Training has ended: write the last due epoch skipped for `min_seconds` (before its weights change again,
        e.g. by restoring the best epoch), and wait for every write."""
        self.wait()
        if self._pending is not None:
            epoch, state = self._pending
            self._pending = None
            if self._saved is None:
                self._saved = self.saved_epochs()
            self._write(epoch, state)

    def wait(self) -> None:
        """Wait for the checkpoint being written, if any; a failed write raises here."""
        self._join()
        if self._error is not None:
            error, self._error = self._error, None
            raise RuntimeError(f"writing a checkpoint failed: {error}") from error

    def _join(self) -> None:
        if self._writer is not None:
            self._writer.join()
            self._writer = None

    def _write_safely(self, epoch: int, state: dict[str, Any]) -> None:
        try:
            self._write(epoch, state)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the training thread by wait()
            self._error = exc

    def _write(self, epoch: int, state: dict[str, Any]) -> None:
        import torch

        local = self.local_folder()
        if local is not None:
            local.mkdir(parents=True, exist_ok=True)
            tmp = local / f".{checkpoint_name(epoch)}.{os.getpid()}.tmp"
            torch.save(state, tmp)
            os.replace(tmp, local / checkpoint_name(epoch))
        else:
            with tempfile.TemporaryDirectory(prefix="fuseflow-ckpt-") as tmp_dir:
                path = Path(tmp_dir) / checkpoint_name(epoch)
                torch.save(state, path)
                self.logger.log_artifact(path, FOLDER)
        if epoch not in self._saved:
            self._saved.append(epoch)
        self._prune()

    def artifact_uri(self) -> str:
        if self._artifact_uri is None:
            self._artifact_uri = self.logger.client.get_run(self.logger.run_id).info.artifact_uri
        return self._artifact_uri

    def local_folder(self) -> Optional[Path]:
        """The checkpoint folder on disk when the run's artifacts are local files, else None."""
        parsed = urlparse(self.artifact_uri())
        if parsed.scheme not in ("file", ""):
            return None
        return Path(url2pathname(parsed.path)) / FOLDER

    def saved_epochs(self) -> list[int]:
        """Epochs with a checkpoint in the run, oldest first (once the one being written is there)."""
        self._join()
        local = self.local_folder()
        if local is not None:
            names = [p.name for p in local.glob("epoch-*.pt")] if local.is_dir() else []
        else:
            try:
                names = [e.path for e in self.logger.client.list_artifacts(self.logger.run_id, FOLDER)]
            except Exception:  # noqa: BLE001 - no checkpoint folder yet
                names = []
        return sorted(int(m.group(1)) for name in names if (m := _NAME.search(name)))

    def latest(self) -> Optional[dict[str, Any]]:
        """The newest loadable checkpoint's state, or None when the run has none."""
        try:
            self.wait()
        except RuntimeError as exc:
            log.warning("%s", exc)
        for epoch in reversed(self.saved_epochs()):
            try:
                state = self._load(epoch)
            except Exception as exc:  # noqa: BLE001 - a damaged file: try the one before
                log.warning("checkpoint of epoch %d is unreadable (%s); trying an older one", epoch, exc)
                continue
            log.info("resuming training from the checkpoint of epoch %d", state["epoch"])
            return state
        return None

    def _load(self, epoch: int) -> dict[str, Any]:
        import torch

        local = self.local_folder()
        if local is not None:
            return torch.load(local / checkpoint_name(epoch), map_location="cpu", weights_only=True)
        from mlflow.artifacts import download_artifacts

        with tempfile.TemporaryDirectory(prefix="fuseflow-ckpt-") as tmp:
            path = download_artifacts(run_id=self.logger.run_id, artifact_path=f"{FOLDER}/{checkpoint_name(epoch)}",
                                      dst_path=tmp, tracking_uri=self.logger.tracking_uri)
            return torch.load(path, map_location="cpu", weights_only=True)

    def _prune(self) -> None:
        """Delete all but the newest `keep` checkpoints where the artifact store allows it."""
        saved = sorted(self._saved or [])
        old, self._saved = saved[:-self.keep], saved[-self.keep:]
        if not old:
            return
        local = self.local_folder()
        try:
            if local is not None:
                for epoch in old:
                    (local / checkpoint_name(epoch)).unlink(missing_ok=True)
                return
            from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

            repo = get_artifact_repository(self.artifact_uri())
            for epoch in old:
                repo.delete_artifacts(f"{FOLDER}/{checkpoint_name(epoch)}")
        except Exception as exc:  # noqa: BLE001 - stores without delete keep every checkpoint
            log.debug("cannot delete old checkpoints: %s", exc)


def _snapshot(value: Any) -> Any:
    """A copy of `value` whose tensors are cloned (containers copied, other objects shared)."""
    if hasattr(value, "detach") and hasattr(value, "clone"):
        return value.detach().clone()
    if isinstance(value, dict):  # dict or OrderedDict (state dicts)
        return type(value)((k, _snapshot(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return type(value)(_snapshot(v) for v in value)
    return value
