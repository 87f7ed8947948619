"""The one exception family a user of this package can cause and should catch."""


class MantisDataError(Exception):
    """Base class: a problem the user can fix (bad path, missing file, corrupt shard, malformed input)."""


class ReleaseError(MantisDataError):
    """A release folder is missing, incomplete or fails verification."""


class InputDataError(MantisDataError):
    """An input catalog, cutout or map is missing or malformed."""


class OutOfGridError(MantisDataError, ValueError):
    """A redshift lies outside the label grid [0, 1.6)."""
