"""Domain metrics of job_service."""

from prometheus_client import Counter

JOBS_CREATED = Counter("lipsync_jobs_created_total", "Jobs created, by model.", ["model"])
JOBS_FINISHED = Counter(
    "lipsync_jobs_finished_total", "Jobs that reached a terminal state, by state.", ["state"]
)
WEBHOOK_DELIVERIES = Counter(
    "lipsync_webhook_deliveries_total", "Webhook delivery attempts, by result.", ["result"]
)
