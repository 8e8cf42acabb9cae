"""Errors a job can end with. Each is a ValueError whose message is shown to the caller as is."""


class JobError(ValueError):
    """Base of every error that is the job's fault or the input's; the message names the problem."""


class InvalidInput(JobError):
    """The job JSON or an operation's parameters are wrong (the message names the field)."""


class LimitExceeded(JobError):
    """A configured limit was exceeded (the message names the limit and its value)."""


class FetchError(JobError):
    """The source image could not be fetched (bad base64, refused or failed URL)."""


class DecodeError(JobError):
    """The source bytes are not an image we can decode (truncated, unknown format, ...)."""


class EncodeError(JobError):
    """The result could not be encoded in the requested format."""
