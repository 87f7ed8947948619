"""``HttpSource``: a cutout source over HTTP for all three surveys, validated in memory (no cache)."""

from __future__ import annotations

from mantis_data.errors import MantisDataError

from .base import Stamps
from .client import Interrupted
from .fetch_config import FetchConfig
from .legacysurvey import LegacySurveySource
from .ps1 import PS1Source

# ---------------------------------------------------------------------------------------------
# A combined HTTP source


class HttpSource:
    """Cutout source over HTTP for all three surveys, validated in memory (no cache): for small jobs.

    For a release, fetch into a cache first (``fetch_cutouts``) and build from it with LocalFitsSource:
    the rate limits of an HttpSource copied into worker processes are per process.
    """

    def __init__(self, config: FetchConfig | None = None):
        self.config = config or FetchConfig()
        self._init()

    def _init(self) -> None:
        client = self.config.make_client()
        self._ps1 = PS1Source(client, self.config.ps1_url, self.config.max_offset_px)
        self._legacy = LegacySurveySource(client, self.config.legacy_url, self.config.max_offset_px)

    def __getstate__(self) -> dict:
        return {"config": self.config}

    def __setstate__(self, state: dict) -> None:
        self.config = state["config"]
        self._init()

    def get(self, target_id: str, ra: float, dec: float) -> Stamps:
        """The three stamps of one target at (ra, dec) degrees ICRS, or failures per survey."""
        stamps = Stamps(target_id=target_id)
        try:
            self._legacy.fill(stamps, ra, dec)
            self._ps1.fill(stamps, ra, dec)
        except Interrupted:
            raise MantisDataError("interrupted") from None
        return stamps
