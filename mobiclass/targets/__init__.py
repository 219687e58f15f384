"""Pick your hardware first: the target catalogue and what a model costs on each target."""
from .budget import Budget, choose_recipe, estimate, get_target, profile
from .catalog import KINDS, TARGETS, Published, Recipe, Target

__all__ = ["Budget", "KINDS", "Published", "Recipe", "TARGETS", "Target", "choose_recipe", "estimate", "get_target",
           "profile"]
