"""Python client of the lip-sync video API.

    from lipsync_client import Client

    client = Client()  # reads LIPSYNC_API_KEY and LIPSYNC_BASE_URL
    job = client.lipsync_image("face.jpg", "voice.wav", resolution="720p").wait()
    if job.status == "completed":
        job.download("out.mp4")

`AsyncClient` has the same calls for asyncio; `lipsync_client.webhooks`
verifies the API's signed webhooks; the `lipsync` command (lipsync_client.cli)
does all of it from a shell.
"""

from lipsync_client import webhooks
from lipsync_client._base import DEFAULT_BASE_URL, __version__
from lipsync_client.async_client import AsyncClient, AsyncJob
from lipsync_client.client import Client, Job
from lipsync_client.errors import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    BucketError,
    ConfigurationError,
    ConflictError,
    DownloadError,
    FieldError,
    InsufficientCreditsError,
    LipsyncError,
    NotFoundError,
    RateLimitError,
    ServerError,
    UploadsUnavailableError,
    ValidationError,
    WaitTimeoutError,
    WebhookVerificationError,
)
from lipsync_client.models import (
    Balance,
    Estimate,
    Progress,
    Upload,
    UsageEntry,
    WebhookDelivery,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "APIConnectionError",
    "APIError",
    "AsyncClient",
    "AsyncJob",
    "AuthenticationError",
    "Balance",
    "BucketError",
    "Client",
    "ConfigurationError",
    "ConflictError",
    "DownloadError",
    "Estimate",
    "FieldError",
    "InsufficientCreditsError",
    "Job",
    "LipsyncError",
    "NotFoundError",
    "Progress",
    "RateLimitError",
    "ServerError",
    "Upload",
    "UploadsUnavailableError",
    "UsageEntry",
    "ValidationError",
    "WaitTimeoutError",
    "WebhookDelivery",
    "WebhookVerificationError",
    "__version__",
    "webhooks",
]
