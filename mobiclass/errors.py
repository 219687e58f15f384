"""Errors a user can act on: the CLI prints their message alone, never a traceback."""


class MobiclassError(Exception):
    """Base class; ``exit_code`` is what the command line returns.

    The message states the facts. `code` names the situation and `facts` carry its details, so that each
    front end (the command line, the HTTP service) can add advice in its own words: flags, buttons, fields.
    """

    exit_code = 1

    def __init__(self, message: str = "", code: str | None = None, **facts):
        super().__init__(message)
        self.code = code
        self.facts = facts

    def __reduce__(self):  # keep code and facts across processes (torchrun ranks share errors)
        return _rebuild, (type(self), str(self), self.code, self.facts)


def _rebuild(kind: type, message: str, code: str | None, facts: dict) -> MobiclassError:
    return kind(message, code, **facts)


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
