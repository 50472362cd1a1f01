"""Send a job's logging, warnings and progress bars to its log file."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path


@contextlib.contextmanager
def log_to(path: str | Path | None):
    """Route logging, stdout and stderr (tqdm writes there) to ``path`` for the duration.

    Without a path everything stays on the terminal.
    """
    if path is None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        yield
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", buffering=1) as handle, contextlib.redirect_stdout(handle), contextlib.redirect_stderr(handle):
        root = logging.getLogger()
        handler = logging.StreamHandler(handle)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        try:
            yield
        except BaseException:
            logging.getLogger("uqroute").exception("job failed")
            raise
        finally:
            root.removeHandler(handler)
