"""job_service: job records, their state machine, the work queue and webhooks."""
