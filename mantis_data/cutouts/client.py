"""A polite, resilient HTTP GET client for the cutout services (standard library only).

Per host (``scheme://host:port``): at most ``concurrency`` requests in flight and a request-rate limit
(a token bucket, ``rate`` requests per second with a burst of ``burst``). Each request has a socket
timeout. Failures are retried with exponential backoff and jitter: timeouts, connection errors,
truncated bodies, HTTP 408/429/5xx, and responses the caller's validator rejects (an HTML error page
served with status 200, a FITS file of the wrong shape or position). A ``Retry-After`` header (seconds or
an HTTP date) is honoured: the thread waits at least that long and the whole host pauses for it. Other
4xx answers will not change on a retry and fail at once. Connections are kept alive per thread and host.

Also here: the response checks shared by the services (``check_centre``: a cutout's WCS centre lies
within a pixel of the requested position).
"""

from __future__ import annotations

import email.utils
import http.client
import math
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlencode, urljoin, urlsplit

import mantis_data
from mantis_data.errors import InputDataError

T = TypeVar("T")

USER_AGENT = (
    f"mantis-data-builders/{mantis_data.__version__} "
    "(Mantis Shrimp photo-z dataset builder; python http.client; polite: rate-limited, honours Retry-After)"
)
"""User-Agent sent with every request: it names the project so a service operator can see who calls."""

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
"""HTTP statuses worth retrying (any other 5xx is retried too); other 4xx fail at once."""

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 5


class InvalidResponse(Exception):
    """A response body that a validator rejects; ``reason`` is a short failure string (retried)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class RequestFailed(Exception):
    """A request that did not give a valid response: ``reason`` ('http 503', 'timeout', ...) after ``attempts``."""

    def __init__(self, reason: str, attempts: int, retryable: bool = True):
        self.reason = reason
        self.attempts = attempts
        self.retryable = retryable
        super().__init__(self.status)

    @property
    def status(self) -> str:
        """The manifest's failure string: 'failed: <reason> after <n> attempt(s)'."""
        return f"failed: {self.reason} after {self.attempts} attempt{'s' if self.attempts != 1 else ''}"


class _StaleConnection(Exception):
    """A reused keep-alive connection failed before any response: resend on a new one."""


class Interrupted(Exception):
    """The client was asked to stop (``HttpClient.stop``) before a request completed."""


@dataclass(frozen=True)
class HostLimits:
    """Per-host politeness: requests in flight, requests per second (None: unlimited), burst size."""

    concurrency: int = 4
    rate: float | None = 5.0
    burst: int = 1

    def __post_init__(self) -> None:
        if int(self.concurrency) < 1:
            raise InputDataError(f"concurrency per host must be >= 1, not {self.concurrency}")
        if self.rate is not None and not (self.rate > 0 and math.isfinite(self.rate)):
            raise InputDataError(f"rate must be a positive number of requests per second (or None), not {self.rate}")
        if int(self.burst) < 1:
            raise InputDataError(f"burst must be >= 1, not {self.burst}")


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts per request and the backoff between them (seconds): base * 2**k, capped, times a jitter factor."""

    attempts: int = 5
    backoff_s: float = 1.0
    backoff_max_s: float = 60.0
    jitter: float = 0.5
    max_retry_after_s: float = 600.0

    def __post_init__(self) -> None:
        if int(self.attempts) < 1:
            raise InputDataError(f"attempts must be >= 1, not {self.attempts}")
        if self.backoff_s < 0 or self.backoff_max_s < 0 or self.max_retry_after_s < 0:
            raise InputDataError("backoff and Retry-After limits must be >= 0 seconds")
        if not 0 <= self.jitter <= 1:
            raise InputDataError(f"jitter must be in [0, 1], not {self.jitter}")

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based), jittered."""
        base = min(self.backoff_max_s, self.backoff_s * 2.0 ** (attempt - 1))
        return base * (1.0 + self.jitter * (2.0 * rng.random() - 1.0))


class TokenBucket:
    """A thread-safe request-rate limiter (GCRA): ``rate`` per second with bursts of ``burst``; pausable."""

    def __init__(self, rate: float | None, burst: int = 1, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.burst = max(1, int(burst))
        self._clock = clock
        self._lock = threading.Lock()
        self._tat = 0.0  # theoretical arrival time of the next request
        self._paused_until = 0.0

    def reserve(self) -> float:
        """Reserve the next request slot; returns the seconds to wait before sending."""
        with self._lock:
            now = self._clock()
            start = max(now, self._paused_until)
            if self.rate is None:
                return start - now
            period = 1.0 / self.rate
            send = max(start, self._tat - (self.burst - 1) * period)
            self._tat = max(send, self._tat) + period
            return send - now

    def pause(self, seconds: float) -> None:
        """Hold every request to this host for ``seconds`` from now (a Retry-After)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + max(0.0, seconds))


class _Host:
    def __init__(self, limits: HostLimits):
        self.slots = threading.BoundedSemaphore(int(limits.concurrency))
        self.bucket = TokenBucket(limits.rate, limits.burst)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header value (delta-seconds, fractional allowed, or HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _reason_of(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timeout"
    if isinstance(exc, http.client.IncompleteRead):
        return "truncated body"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "connection closed without response"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, socket.gaierror):
        return "host not found"
    return f"connection error ({type(exc).__name__})"


class HttpClient:
    """GET with per-host concurrency and rate limits, timeouts, retries and response validation.

    ``get(url, params, validate)`` returns ``(validate(body, headers), attempts)`` or raises RequestFailed.
    Thread-safe; each thread keeps its own keep-alive connection per host. ``counters`` tallies requests
    and outcomes ('requests', 'ok', 'retries', 'http 503', 'timeout', 'invalid', ...).
    """

    def __init__(
        self,
        limits: HostLimits | None = None,
        retry: RetryPolicy | None = None,
        timeout_s: float = 30.0,
        user_agent: str = USER_AGENT,
        seed: int | None = None,
        sleep: Callable[[float], None] | None = None,
    ):
        if not timeout_s > 0:
            raise InputDataError(f"timeout must be > 0 seconds, not {timeout_s}")
        self.limits = limits or HostLimits()
        self.retry = retry or RetryPolicy()
        self.timeout_s = float(timeout_s)
        self.user_agent = user_agent
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self._hosts: dict[str, _Host] = {}
        self._hosts_lock = threading.Lock()
        self._local = threading.local()
        self._pools: list[dict] = []  # each thread's {(scheme, netloc): [connection, uses]}
        self._stop = threading.Event()
        self._sleep = sleep
        self.counters: Counter[str] = Counter()
        self._counter_lock = threading.Lock()

    # ------------------------------------------------------------------ plumbing
    def _count(self, key: str, n: int = 1) -> None:
        with self._counter_lock:
            self.counters[key] += n

    def _host(self, origin: str) -> _Host:
        with self._hosts_lock:
            host = self._hosts.get(origin)
            if host is None:
                host = self._hosts[origin] = _Host(self.limits)
            return host

    def _wait(self, seconds: float) -> None:
        if seconds <= 0:
            return
        if self._sleep is not None:
            self._sleep(seconds)
        elif self._stop.wait(seconds):
            raise Interrupted()

    def _conn(self, scheme: str, netloc: str, fresh: bool) -> tuple[http.client.HTTPConnection, bool]:
        """The thread's connection to a host, and whether it has served a request before."""
        pool = getattr(self._local, "pool", None)
        if pool is None:
            pool = self._local.pool = {}
            with self._hosts_lock:
                self._pools.append(pool)
        key = (scheme, netloc)
        entry = pool.get(key)
        if entry is not None and not fresh:
            entry[1] += 1
            return entry[0], entry[1] > 1
        if entry is not None:
            entry[0].close()
        cls = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
        conn = cls(netloc, timeout=self.timeout_s)
        pool[key] = [conn, 1]
        return conn, False

    def _drop_conn(self, scheme: str, netloc: str) -> None:
        pool = getattr(self._local, "pool", {})
        entry = pool.pop((scheme, netloc), None)
        if entry is not None:
            entry[0].close()

    def _once(self, url: str) -> tuple[int, http.client.HTTPMessage, bytes]:
        """One GET (following redirects), within the host's limits; raises OSError/HTTPException on transport errors."""
        for _ in range(_MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise InputDataError(f"not an http(s) URL: {url!r}")
            origin = f"{parts.scheme}://{parts.netloc}"
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            host = self._host(origin)
            fresh = False
            while True:
                with host.slots:
                    self._wait(host.bucket.reserve())
                    if self._stop.is_set():
                        raise Interrupted()
                    try:
                        status, headers, body = self._send(parts.scheme, parts.netloc, target, fresh)
                    except _StaleConnection:
                        # a kept-alive connection the server had closed: resend once on a new connection
                        self._count("stale_connections")
                        fresh = True
                        continue
                break
            if status in _REDIRECTS and headers.get("Location"):
                url = urljoin(url, headers["Location"])
                continue
            return status, headers, body
        raise http.client.HTTPException(f"more than {_MAX_REDIRECTS} redirects")

    def _send(self, scheme: str, netloc: str, target: str, fresh: bool) -> tuple[int, http.client.HTTPMessage, bytes]:
        headers = {"User-Agent": self.user_agent, "Accept-Encoding": "identity", "Connection": "keep-alive"}
        conn, reused = self._conn(scheme, netloc, fresh=fresh)
        self._count("requests")
        try:
            conn.request("GET", target, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self._drop_conn(scheme, netloc)
            if reused:
                raise _StaleConnection() from None
            raise
        except BaseException:
            self._drop_conn(scheme, netloc)
            raise
        if resp.will_close:
            self._drop_conn(scheme, netloc)
        return resp.status, resp.headers, body

    # ------------------------------------------------------------------ public
    def get(
        self,
        url: str,
        params: Mapping[str, Any] | None = None,
        validate: Callable[[bytes, http.client.HTTPMessage], T] | None = None,
    ) -> tuple[T | bytes, int]:
        """GET ``url`` with query ``params``; returns (validated value or body, attempts) or raises RequestFailed."""
        full = f"{url}?{urlencode(params)}" if params else url
        policy = self.retry
        reason = "no attempt"
        for attempt in range(1, policy.attempts + 1):
            retry_after = None
            try:
                status, headers, body = self._once(full)
            except Interrupted:
                raise
            except InputDataError:
                raise
            except (OSError, http.client.HTTPException) as exc:
                reason = _reason_of(exc)
                self._count(reason)
            else:
                if 200 <= status < 300:
                    if validate is None:
                        self._count("ok")
                        return body, attempt
                    try:
                        value = validate(body, headers)
                    except InvalidResponse as exc:
                        reason = exc.reason
                        self._count("invalid")
                    except (ValueError, TypeError, KeyError, IndexError, OSError, UnicodeError) as exc:
                        # a body that trips the parser in an unforeseen way is a bad response, not a crash
                        reason = f"unreadable: {type(exc).__name__}: {exc}"[:200]
                        self._count("invalid")
                    else:
                        self._count("ok")
                        return value, attempt
                elif status in RETRY_STATUSES or status >= 500:
                    reason = f"http {status}"
                    self._count(reason)
                    retry_after = parse_retry_after(headers.get("Retry-After"))
                    if retry_after is not None:
                        retry_after = min(retry_after, policy.max_retry_after_s)
                        self._host(_origin(full)).bucket.pause(retry_after)
                else:
                    self._count(f"http {status}")
                    raise RequestFailed(f"http {status}", attempt, retryable=False)
            if attempt == policy.attempts:
                break
            self._count("retries")
            with self._rng_lock:
                delay = policy.delay(attempt, self._rng)
            self._wait(max(delay, retry_after or 0.0))
        raise RequestFailed(reason, policy.attempts)

    def stop(self) -> None:
        """Make waiting and new requests raise Interrupted (for a clean shutdown)."""
        self._stop.set()

    def close(self) -> None:
        """Close every kept-alive connection (call when no request is in flight)."""
        with self._hosts_lock:
            pools = list(self._pools)
        for pool in pools:
            for conn, _ in list(pool.values()):
                conn.close()
            pool.clear()


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def check_base_url(url: str, flag: str) -> str:
    """``url`` without a trailing slash, or InputDataError when it is not an http(s) URL."""
    parts = urlsplit(str(url))
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InputDataError(f"{flag} must be an http:// or https:// URL, not {url!r}")
    return str(url).rstrip("/")


def format_coordinate(value: float) -> str:
    """A coordinate for a query string: the shortest decimal that round-trips the float64 exactly."""
    v = float(value)
    if not math.isfinite(v):
        raise InputDataError(f"coordinate {value!r} is not a finite number")
    return repr(v)


# ---------------------------------------------------------------------------------------------
# Response checks shared by the services


from .fits import _tan_pixel  # noqa: E402,F401  (moved to fits.py; kept importable from here)


def centre_offset_px(header, ra: float, dec: float) -> float:
    """Pixels between an image's centre and (ra, dec) degrees (mantis_data.cutouts.fits.centre_offset_px);
    a missing or broken WCS raises InvalidResponse('no_wcs' / 'unreadable: bad WCS ...')."""
    from .fits import CutoutError
    from .fits import centre_offset_px as _offset

    try:
        return _offset(header, ra, dec)
    except CutoutError as exc:
        raise InvalidResponse(exc.reason) from None


def check_centre(header, ra: float, dec: float, max_offset_px: float) -> None:
    """Raise InvalidResponse('wrong_position: <px> px' or 'no_wcs') unless the WCS centre is within ``max_offset_px``."""
    from .fits import position_failure

    why = position_failure(header, ra, dec, max_offset_px)
    if why is not None:
        raise InvalidResponse(why)
