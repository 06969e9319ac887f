"""Keep tracebacks off the screen: the console shows one line per error, the full record goes to a log file."""
from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path

from tasks.paths import LOG_DIR

LOG_DIR_ENV = "FUSEFLOW_LOG_DIR"


class _NoTraceback(logging.Formatter):
    """Wraps a handler's formatter and drops exception text and stack info from what it prints."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


def log_dir() -> Path:
    """The folder of the log files: FUSEFLOW_LOG_DIR, else `.fuseflow/logs/`."""
    return Path(os.environ[LOG_DIR_ENV]) if os.environ.get(LOG_DIR_ENV) else LOG_DIR


def log_label(name: str) -> str:
    """`name` made safe inside a file name: letters, digits, `-`, `_` and `.` only, no leading `.`, 100 at most
    (pipeline names already keep this rule; a `rerun`'s run id comes from the command line)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", str(name)).lstrip(".")[:100] or "run"


def route_tracebacks_to_file(name: str) -> Path:
    """Set up Prefect's logging, strip tracebacks from its console handlers, add a full-detail file handler."""
    from prefect.logging.configuration import setup_logging

    setup_logging()
    folder = log_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{log_label(name)}.log"
    file_handler = logging.FileHandler(path, encoding="utf-8", delay=True)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s - %(message)s"))
    file_handler.setLevel(logging.INFO)
    for logger_name in ("prefect", "fuseflow", ""):
        logger = logging.getLogger(logger_name)
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                handler.setFormatter(_NoTraceback(handler.formatter))
        if logger_name in ("prefect", "fuseflow"):
            logger.addHandler(file_handler)
    logging.getLogger("fuseflow").setLevel(logging.INFO)
    return path
