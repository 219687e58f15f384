"""``train --target``: the target's best recipe that fits it, with the options given explicitly kept (and refused,
before any work, when they cannot fit)."""
from __future__ import annotations

from ..errors import UsageError
from ..pretrained import DEFAULT_WEIGHTS, loadable
from ..targets import Recipe, choose_recipe, estimate, get_target
from .config import TrainConfig

RECIPE_OPTIONS = ("model", "width_mult", "image_size")


def fit_to_target(config: TrainConfig, explicit: set[str]) -> None:
    """Set `config`'s architecture, width and image size to the recipe chosen for its target, keeping the options
    in `explicit`. The smallest head (2 classes) is assumed until the data is scanned; :func:`check_fits` then
    checks with the real one."""
    target = get_target(config.target)
    given = {name: getattr(config, name) for name in RECIPE_OPTIONS if name in explicit}
    recipe, _ = choose_recipe(target, given, num_classes=2,
                              usable=lambda r: config.weights != DEFAULT_WEIGHTS or loadable(r.model, config.weights,
                                                                                           r.width_mult))
    config.model, config.width_mult, config.image_size = recipe.model, recipe.width_mult, recipe.image_size
    if target.padding and "padding" not in explicit:
        config.padding = target.padding
    for name, value in target.training:
        if name not in explicit:
            setattr(config, name, value)


def check_fits(config: TrainConfig, num_classes: int) -> str:
    """The run's recipe, with its real number of classes, must still fit its target; the sentence that says so."""
    target = get_target(config.target)
    recipe = Recipe(config.model, config.width_mult, config.image_size)
    budget = estimate(target, recipe, num_classes)
    if not budget.fits:
        raise UsageError(f"{recipe.describe()} with {num_classes} classes does not fit {target.name}: "
                         f"{'; '.join(budget.reasons)}", code="classes_do_not_fit", target=target.name)
    return (f"target {target.name}: {recipe.describe()}, about {budget.ram_kb:,.0f} kB of RAM for activations "
            f"(of {target.ram_kb:,}) and {budget.flash_kb:,.0f} kB of weights (of {target.flash_kb:,}) in "
            f"{budget.precision}")


def explicit_options(overrides: dict, config) -> set[str]:
    """The options the user chose: those given as arguments, those in a config file, and all of a TrainConfig."""
    from ..files import read_yaml_mapping

    chosen = set(overrides)
    if isinstance(config, TrainConfig):
        chosen |= set(RECIPE_OPTIONS)
    elif config is not None:
        chosen |= set(read_yaml_mapping(config, "config file"))
    return chosen
