"""How to fetch cutouts: ``FetchConfig`` (service URLs, per-host politeness, timeouts, retries, surveys).

Used by the bulk fetch (``mantis_data.cutouts.fetch``) and ``HttpSource`` (``mantis_data.cutouts.http_source``).
"""

from __future__ import annotations

from dataclasses import dataclass

from mantis_data.bands import SURVEY_ORDER, SURVEYS
from mantis_data.errors import InputDataError

from .client import HostLimits, HttpClient, RetryPolicy
from .legacysurvey import DEFAULT_LEGACY_URL
from .ps1 import DEFAULT_PS1_URL

# ---------------------------------------------------------------------------------------------
# Configuration


@dataclass
class FetchConfig:
    """How to fetch: service URLs, per-host politeness, timeouts and retries, which surveys.

    concurrency: requests in flight per host; rate: requests per second per host (None: unlimited);
    timeout_s: socket timeout per connect/read; attempts: tries per request; backoff_s: first retry wait
    (doubling, capped at backoff_max_s, jittered by +-50%); max_offset_px: largest WCS centre offset kept;
    workers: fetch threads (default 2 x concurrency); recheck: revalidate files of targets already ok.
    """

    ps1_url: str = DEFAULT_PS1_URL
    legacy_url: str = DEFAULT_LEGACY_URL
    concurrency: int = 4
    rate: float | None = 5.0
    burst: int = 1
    timeout_s: float = 30.0
    attempts: int = 5
    backoff_s: float = 1.0
    backoff_max_s: float = 60.0
    max_retry_after_s: float = 600.0
    max_offset_px: float = 1.0
    surveys: tuple[str, ...] = SURVEY_ORDER
    workers: int | None = None
    recheck: bool = False
    seed: int | None = None

    def __post_init__(self) -> None:
        self.surveys = tuple(self.surveys)
        bad = [s for s in self.surveys if s not in SURVEYS]
        if bad or not self.surveys:
            raise InputDataError(f"surveys must be a non-empty subset of {SURVEY_ORDER}, not {self.surveys}")
        if self.workers is not None and self.workers < 1:
            raise InputDataError(f"workers must be >= 1, not {self.workers}")
        if not self.max_offset_px > 0:
            raise InputDataError(f"max_offset_px must be > 0, not {self.max_offset_px}")

    def make_client(self) -> HttpClient:
        """An HttpClient with this configuration's limits, retries and timeout."""
        return HttpClient(
            HostLimits(concurrency=self.concurrency, rate=self.rate, burst=self.burst),
            RetryPolicy(
                attempts=self.attempts,
                backoff_s=self.backoff_s,
                backoff_max_s=self.backoff_max_s,
                max_retry_after_s=self.max_retry_after_s,
            ),
            timeout_s=self.timeout_s,
            seed=self.seed,
        )
