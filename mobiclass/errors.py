"""Errors a user can act on: the CLI prints their message alone, never a traceback."""


class MobiclassError(Exception):
    """Base class; ``exit_code`` is what the command line returns."""

    exit_code = 1


class UsageError(MobiclassError):
    """A wrong argument, name or path given by the user."""

    exit_code = 2


class WeightsError(MobiclassError):
    """Weights that cannot be found, downloaded, verified or loaded."""

    exit_code = 2


class ImageError(MobiclassError):
    """An image file that cannot be used; the message says why."""


class NotAnImageError(ImageError):
    """Bytes that are not an image in any format Pillow reads (as opposed to a damaged image)."""
