"""Why a job failed, in words a user can act on."""


class JobFailure(Exception):
    """The job cannot succeed as submitted; `str(exc)` is shown to the user.

    Raising it fails the job at once (no retry) and charges nothing.
    """
