"""`train.distributed`: the training step in N processes with DistributedDataParallel, launched by torchrun.

    train:
      backend: torch                                    # or hf_trainer: the HF Trainer under torchrun
      distributed: {nproc_per_node: 2, backend: gloo}   # backend: nccl on CUDA GPUs (the default when there are any)

The flow's process stays the orchestrator: `train_distributed` writes the step's inputs (model, tensors, config,
seed, the MLflow run, a resume state) to a temporary folder, runs `python -m torch.distributed.run --standalone
--nproc_per_node N -m WORKER FOLDER` and streams its output into the Prefect run's log as it comes (rank 0's epoch
lines, marked `EPOCH_PREFIX`, as the single process writes them; the rest prefixed `[ddp]`). Every process trains
the same model on its `DistributedSampler` share of each epoch (WORKER: the torch loop of
tasks/train/ddp/torch_worker.py, or the HF Trainer in tasks/train/ddp/hf_worker.py, which shards the data itself);
rank 0 alone logs to MLflow, writes checkpoints and the final weights. Every rank writes a digest of its final
weights: they must be equal, or the step fails. When a rank fails, the step's error names the rank and repeats its
error line.

Config classes only at module level: torch is imported inside functions.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any, Mapping, Optional

from tasks.cache.fingerprint import weights_digest
from tasks.steps.run_logger import run_logger
from tasks.train.ddp.config import DistributedConfig

log = logging.getLogger("fuseflow")

INPUTS = "inputs.pt"
FINAL = "final.pt"
#: marks rank 0's epoch lines in the workers' output: logged without the `[ddp]` prefix, like the single process'
EPOCH_PREFIX = "fuseflow-epoch: "


class DistributedTrainingError(RuntimeError):
    """A training process failed (its rank and error line are in the message), or the ranks disagree."""


def resolve_backend(config: DistributedConfig, device: str = "auto") -> str:
    """The process-group backend to use: the configured one (checked against this machine), else nccl when CUDA
    GPUs are there (and the device allows), else gloo."""
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    backend = config.backend or ("nccl" if gpus and device != "cpu" else "gloo")
    if backend == "nccl":
        if not gpus:
            raise DistributedTrainingError("train.distributed.backend 'nccl' needs CUDA GPUs and this machine has "
                                           "none: use backend: gloo to train on CPUs")
        if config.nproc_per_node > gpus:
            raise DistributedTrainingError(
                f"train.distributed.nproc_per_node is {config.nproc_per_node} but this machine has {gpus} CUDA "
                f"GPU(s); nccl needs one GPU per process: set nproc_per_node: {gpus} (or backend: gloo)")
    return backend


def check_equal_weights(digests: Mapping[int, str], world_size: int) -> str:
    """The common digest of every rank's final weights; raises when a rank's digest is missing or differs."""
    missing = [rank for rank in range(world_size) if rank not in digests]
    if missing:
        raise DistributedTrainingError(f"rank(s) {', '.join(map(str, missing))} wrote no digest of their final "
                                       "weights: they did not finish training")
    reference = digests[0]
    differing = [rank for rank in range(world_size) if digests[rank] != reference]
    if differing:
        raise DistributedTrainingError(
            f"the final weights differ between ranks: rank(s) {', '.join(map(str, differing))} disagree with rank 0 "
            f"({', '.join(f'{r}: {digests[r][:12]}' for r in range(world_size))}); DDP replicas must stay equal - "
            "is there a parameter updated outside the optimizer or a rank-dependent branch in the model?")
    return reference


def failure_of(folder: Path, world_size: int, returncode: int, output: list[str]) -> str:
    """The message of a failed torchrun: the first rank to fail and its error line (other ranks usually fail after
    it, on the broken collective), else the last line of the output that reads like an error."""
    errors = []
    for path in folder.glob("error-*.json"):
        try:
            errors.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    if errors:
        first = min(errors, key=lambda e: e["time"])
        others = sorted(e["rank"] for e in errors if e is not first)
        also = f" (rank(s) {', '.join(map(str, others))} failed after it)" if others else ""
        return f"rank {first['rank']} of {world_size} failed: {first['error']}{also}"
    lines = [line.strip() for line in output if line.strip()]
    hint = next((line for line in reversed(lines) if "Error" in line or "error" in line or "exitcode" in line),
                lines[-1] if lines else "no output")
    return f"torchrun exited with code {returncode} before a rank reported an error; last error line: {hint}"


def _python_path() -> str:
    """This process' import path for the workers: they unpickle the model, whose class may live in the project."""
    entries = [os.getcwd() if not p else os.path.abspath(p) for p in sys.path]
    return os.pathsep.join(dict.fromkeys(p for p in entries if os.path.exists(p)))


#: the module torchrun runs in each process, per backend (each one's `__main__` is `tasks.train.ddp.rank.run_rank`)
TORCH_WORKER = "tasks.train.ddp.torch_worker"
HF_WORKER = "tasks.train.ddp.hf_worker"


def torchrun_command(folder: Path, nproc: int, worker: str = TORCH_WORKER) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "--max_restarts=0", "--monitor_interval=0.5", "-m", worker, str(folder)]


def run_ranks(model: Any, payload: dict[str, Any], config: Any, worker: str, logger: Any = None) -> dict[str, Any]:
    """Train `model` in `config.distributed.nproc_per_node` processes under torchrun, each running the
    `worker` module (its `train_rank(folder, rank, local_rank, world)`) on `payload` plus the common inputs (model, resolved
    backend, MLflow run, launcher pid); checks that every rank ended with equal weights, loads rank 0's final
    weights into `model` and returns what rank 0 saved as its `result`."""
    import torch

    dist = config.distributed
    backend = resolve_backend(dist, config.device)
    world = dist.nproc_per_node
    folder = Path(tempfile.mkdtemp(prefix="fuseflow-ddp-"))
    try:
        torch.save({**payload, "model": model.to("cpu"), "config": config, "backend": backend,
                    "run_id": getattr(logger, "run_id", None), "tracking_uri": getattr(logger, "tracking_uri", None),
                    "launcher_pid": os.getpid()}, folder / INPUTS)
        returncode, output = _run_torchrun(folder, world, worker)
        if returncode != 0:
            raise DistributedTrainingError(failure_of(folder, world, returncode, output))
        digests = {int(p.stem.split("-")[1]): p.read_text(encoding="utf-8").strip() for p in folder.glob("digest-*")}
        common = check_equal_weights(digests, world)
        final = torch.load(folder / FINAL, map_location="cpu", weights_only=False)
        model.load_state_dict(final["model"])
        if weights_digest(model) != common:
            raise DistributedTrainingError("rank 0's saved weights do not match the digest it computed")
        model.eval()
        log.info("distributed training: %d %s processes ended with equal weights (sha256 %s)",
                 world, backend, common[:12])
        return final["result"]
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def train_distributed(model: Any, data: dict[str, tuple[Any, Any]], task: str, config: Any, seed: int,
                      logger: Any = None, checkpoint: Any = None, resume: Optional[dict[str, Any]] = None) -> Any:
    """Train `model` like `train_torch` does, in `config.distributed.nproc_per_node` DDP processes; loads rank 0's
    final weights into `model` and returns rank 0's `TrainResult`. `resume` is a state of `on_epoch_end` (every
    rank starts from it); checkpoints go to `logger`'s run every `checkpoint.every` epochs."""
    from tasks.train.common import TrainResult

    payload = {"data": data, "task": task, "seed": seed, "resume": resume,
               "checkpoint_every": getattr(checkpoint, "every", 0) if logger else 0,
               "checkpoint_keep": getattr(checkpoint, "keep", 2)}
    return TrainResult(**run_ranks(model, payload, config, TORCH_WORKER, logger))


def train_hf_distributed(model: Any, train_set: Any, val_set: Any, tokenizer: Any, config: Any, seed: int,
                         group_by_length: bool = False, logger: Any = None,
                         checkpoint_dir: Optional[Path] = None) -> Any:
    """`tasks.train.backends.hf_trainer.train_hf` in `config.distributed.nproc_per_node` processes: the HF Trainer under torchrun
    (it joins the process group and wraps the model in DDP itself); rank 0 alone logs the epochs to `logger`'s
    run and writes the Trainer's checkpoints into `checkpoint_dir`, from whose newest checkpoint every rank resumes.
    Loads rank 0's final weights into `model` and returns rank 0's `TrainResult`."""
    from tasks.train.common import TrainResult

    payload = {"train": train_set, "validation": val_set, "tokenizer": tokenizer, "seed": seed,
               "group_by_length": group_by_length,
               "checkpoint_dir": str(Path(checkpoint_dir).absolute()) if checkpoint_dir is not None else None}
    return TrainResult(**run_ranks(model, payload, config, HF_WORKER, logger))


def _run_torchrun(folder: Path, world: int, worker: str = TORCH_WORKER) -> tuple[int, list[str]]:
    """Run torchrun, each output line into the log as it comes; its exit code and the last 200 lines."""
    env = dict(os.environ, PYTHONPATH=_python_path())
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // world)))
    command = torchrun_command(folder, world, worker)
    log.info("distributed training: %s", " ".join(command[1:]))
    run_log = run_logger()
    started = time.perf_counter()
    tail: deque[str] = deque(maxlen=200)
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            cwd=os.getcwd(), bufsize=1)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            tail.append(line)
            _, marked, epoch_line = line.partition(EPOCH_PREFIX)  # torchrun may put a rank prefix before it
            if marked:
                run_log.info("%s", epoch_line)
            elif line.strip():
                run_log.info("[ddp] %s", line)
        returncode = proc.wait()
    except BaseException:  # Ctrl-C or a cancelled flow: stop the workers too
        _stop(proc)
        raise
    log.info("distributed training: torchrun ended with code %d after %.1f s", returncode,
             time.perf_counter() - started)
    return returncode, list(tail)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()  # torchrun passes SIGTERM on to its workers
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
