"""Better data: the data doctor (label errors, duplicates and leaks, outliers, odd files) and the choice of the
photos worth labelling next."""
from .doctor import apply_fixes, doctor
from .select import select

__all__ = ["apply_fixes", "doctor", "select"]
