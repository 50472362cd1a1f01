"""On-disk cache of API responses, so a rerun (or a crashed job's retry) pays for no request twice.

Each entry is one small JSON file named by the SHA-256 of the canonical JSON of
the full request (model, endpoint, messages and every sampling parameter; never
credentials), under a two-character fan-out folder so no directory grows huge.
Files are written temp-then-rename, so two processes writing the same key at
once each leave a complete file and the last rename wins; both wrote the same
answer to the same question, so either is fine.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping

from uqroute.io import write_text

log = logging.getLogger(__name__)


def canonical_json(request: Mapping[str, Any]) -> str:
    """The one spelling of ``request`` that its cache key is computed from (sorted keys, no spaces)."""
    return json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class RequestCache:
    """Maps a request (a JSON-serialisable dict) to the response dict it got."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)

    @staticmethod
    def key(request: Mapping[str, Any]) -> str:
        """64-hex-digit SHA-256 of the canonical JSON of ``request``."""
        return hashlib.sha256(canonical_json(request).encode("utf-8")).hexdigest()

    def path(self, request: Mapping[str, Any]) -> Path:
        key = self.key(request)
        return self.directory / key[:2] / f"{key}.json"

    def get(self, request: Mapping[str, Any]) -> dict | None:
        """The stored response, or None when the request was never answered (or its entry is unreadable)."""
        path = self.path(request)
        try:
            with open(path, encoding="utf-8") as handle:
                entry = json.load(handle)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            # Only a hand-edited or disk-damaged entry gets here (writes are atomic);
            # asking again overwrites it, which beats failing the whole job.
            log.warning("%s: unreadable cache entry, asking again (%s)", path, err)
            return None
        if not isinstance(entry, dict) or not isinstance(entry.get("response"), dict):
            log.warning("%s: cache entry has no response object, asking again", path)
            return None
        return entry["response"]

    def put(self, request: Mapping[str, Any], response: Mapping[str, Any]) -> Path:
        """Store ``response`` for ``request``; the request is kept beside it so entries can be audited."""
        entry = {"request": request, "response": response}
        return write_text(json.dumps(entry, ensure_ascii=False, allow_nan=False), self.path(request))
