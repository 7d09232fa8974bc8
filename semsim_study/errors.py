"""Exceptions that carry a message meant for the person running the pipeline.

Stage scripts catch ``StudyError`` and print its message without a traceback, so every
message must name the file or key at fault and say what is wrong with it.
"""


class StudyError(Exception):
    """Base class: a problem the user can fix (bad params, bad input file, missing data)."""


class ConfigError(StudyError):
    """A key in params.yaml is missing, unknown or has a bad value."""


class DataError(StudyError):
    """An input file is missing, corrupt, truncated or inconsistent."""


class DownloadError(StudyError):
    """A file could not be fetched, or its checksum does not match."""


class InputError(DataError, ValueError):
    """A tensor or argument handed to the SemSim metric has the wrong shape, dtype or value
    range. Also a ValueError, because code written for lpips or torchmetrics catches that."""
