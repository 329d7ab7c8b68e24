"""Is the MLflow tracking server there? Asked once, in seconds, before a launch starts Ray.

Why up front: MLflow's client retries an unreachable server with backoff (7 retries by
default), and each of the driver's first calls does so: a probe found a launch that died after
258 s with five chained tracebacks, each carrying the URI's credentials. One bounded HTTP
request answers the question in at most `timeout_seconds`, and the error names the server with
its credentials removed (analysis.mlflow_schema.redact_uri).

Only http(s) URIs are checked: a local SQLite store or a file store has no server to reach,
and MLflow's other schemes (databricks, ...) have their own clients and timeouts.
"""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from analysis.mlflow_schema import redact_text, redact_uri
from var_model.errors import VarScaleError

# MLflow's tracking server answers this path without authentication (`mlflow server`'s /health).
HEALTH_PATH = "/health"
DEFAULT_TIMEOUT_SECONDS = 10.0


class TrackingServerError(VarScaleError, ConnectionError):
    """The study's MLflow tracking server cannot be reached."""


def check_tracking_server(tracking_uri: str, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS) -> None:
    """Raise TrackingServerError unless an http(s) tracking server answers within the timeout."""
    parts = urlsplit(tracking_uri)
    if parts.scheme not in ("http", "https"):
        return
    shown = redact_uri(tracking_uri)
    # The request goes to the redacted URI: credentials in a URL are not sent by urllib, and the
    # health endpoint needs none. Any HTTP answer, 401 and 404 included, proves a server listens.
    url = shown.rstrip("/") + HEALTH_PATH
    try:
        urllib.request.urlopen(url, timeout=timeout_seconds).close()
    except urllib.error.HTTPError:
        return
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        if isinstance(reason, socket.timeout) or isinstance(error, TimeoutError):
            reason = f"no answer within {timeout_seconds:g} s"
        raise TrackingServerError(
            f"cannot reach the MLflow tracking server at {shown} ({redact_text(str(reason), tracking_uri)}); "
            "start it, or fix tracking_uri (--set tracking_uri=...)"
        ) from None
