"""Exceptions of the data pipeline.

Every error a user can cause (bad path, unreadable image, mismatched pair, clashing output) is one
of these, so the CLI can print "error: <message>" and exit 2 instead of a traceback. Each message
names the file or option and says what to do.
"""


class DataPrepError(ValueError):
    """A problem with the user's input or options (not a bug)."""


class ImageReadError(DataPrepError):
    """An image file is missing, unreadable or of an unsupported kind."""


class PairMismatchError(DataPrepError):
    """Blurred and sharp images that should form a pair do not (missing partner, other size)."""


class ImageTooSmallError(DataPrepError):
    """An image is smaller than the requested crop."""


class OutputExistsError(DataPrepError):
    """The output database already exists and --force was not given."""


class MissingPathError(DataPrepError, FileNotFoundError):
    """A directory or file named on the command line does not exist."""
