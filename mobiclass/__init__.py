"""mobiclass: image classifiers on the MobileNet family, from a folder of photos to a deployable model."""
__version__ = "0.1.0"

from .errors import ImageError, MobiclassError, UsageError, WeightsError  # noqa: E402
from .models import count_macs, count_parameters, create_model, list_models  # noqa: E402
from .runtime import Classifier, load_classifier, load_run  # noqa: E402

__all__ = ["Classifier", "ImageError", "MobiclassError", "UsageError", "WeightsError", "__version__", "count_macs",
           "count_parameters", "create_model", "list_models", "load_classifier", "load_run"]
