"""What the command line says besides results, shared by the parser and the commands (so that neither imports the
other): deprecation warnings for old spellings, whether argparse or the library meets them."""
from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator


def deprecated(message: str) -> None:
    print(f"warning: {message}; the old spelling will be removed in the next release", file=sys.stderr)


@contextlib.contextmanager
def library_deprecations_shown() -> Iterator[None]:
    """The library's DeprecationWarnings (an old engine name, ...) printed as :func:`deprecated` lines; Python hides
    them by default, and other libraries' stay hidden."""
    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, DeprecationWarning):
            deprecated(str(message))
        else:
            shown(message, category, filename, lineno, file, line)
    with warnings.catch_warnings():
        shown = warnings.showwarning
        warnings.filterwarnings("always", category=DeprecationWarning, module=r"mobiclass\.")
        warnings.showwarning = show
        yield
