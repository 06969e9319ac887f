"""Training checkpoints in the MLflow run's own artifact storage (`checkpoints/epoch-0003.pt`).

Saved every `train.checkpoint_every` epochs with everything a resume needs: model, optimizer, scheduler, the
shuffling generator and torch RNG, early-stopping book-keeping, the epoch and the history. The newest `keep` are
kept; loading tries the newest first and falls back to an older one if it is damaged (a kill during a copy).
"""
from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path
from typing import Any, Optional

FOLDER = "checkpoints"
_NAME = re.compile(r"epoch-(\d+)\.pt$")

log = logging.getLogger("fuseflow")


class Checkpointer:
    """`on_epoch_end`-style callable `(epoch, state)` that saves into one MLflow run; `latest()` loads back."""

    def __init__(self, logger: Any, every: int = 1, keep: int = 2) -> None:
        self.logger = logger
        self.every = every
        self.keep = max(1, keep)
        self._saved: Optional[list[int]] = None  # epochs saved in the run (read once, then kept up to date)
        self._repo: Any = None

    def __call__(self, epoch: int, state: dict[str, Any]) -> None:
        if not self.every or epoch % self.every:
            return
        import torch

        with tempfile.TemporaryDirectory(prefix="fuseflow-ckpt-") as tmp:
            path = Path(tmp) / f"epoch-{epoch:04d}.pt"
            torch.save(state, path)
            self.logger.log_artifact(path, FOLDER)
        if self._saved is None:
            self._saved = self.saved_epochs()
        elif epoch not in self._saved:
            self._saved.append(epoch)
        self._prune()

    def saved_epochs(self) -> list[int]:
        """Epochs with a checkpoint in the run, oldest first."""
        try:
            entries = self.logger.client.list_artifacts(self.logger.run_id, FOLDER)
        except Exception:  # noqa: BLE001 - no checkpoint folder yet
            return []
        return sorted(int(m.group(1)) for e in entries if (m := _NAME.search(e.path)))

    def latest(self) -> Optional[dict[str, Any]]:
        """The newest loadable checkpoint's state, or None when the run has none."""
        import torch
        from mlflow.artifacts import download_artifacts

        for epoch in reversed(self.saved_epochs()):
            with tempfile.TemporaryDirectory(prefix="fuseflow-ckpt-") as tmp:
                try:
                    local = download_artifacts(run_id=self.logger.run_id, artifact_path=f"{FOLDER}/epoch-{epoch:04d}.pt",
                                               dst_path=tmp, tracking_uri=self.logger.tracking_uri)
                    state = torch.load(local, map_location="cpu", weights_only=True)
                except Exception as exc:  # noqa: BLE001 - a damaged file: try the one before
                    log.warning("checkpoint of epoch %d is unreadable (%s); trying an older one", epoch, exc)
                    continue
            log.info("resuming training from the checkpoint of epoch %d", state["epoch"])
            return state
        return None

    def _prune(self) -> None:
        """Delete all but the newest `keep` checkpoints where the artifact store allows it."""
        saved = sorted(self._saved or [])
        old, self._saved = saved[:-self.keep], saved[-self.keep:]
        if not old:
            return
        try:
            if self._repo is None:
                from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

                self._repo = get_artifact_repository(self.logger.client.get_run(self.logger.run_id).info.artifact_uri)
            for epoch in old:
                self._repo.delete_artifacts(f"{FOLDER}/epoch-{epoch:04d}.pt")
        except Exception as exc:  # noqa: BLE001 - stores without delete keep every checkpoint
            log.debug("cannot delete old checkpoints: %s", exc)
