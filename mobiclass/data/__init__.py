"""From files to tensors: image decoding, input expansion, preprocessing."""
from .images import IMAGE_EXTENSIONS, load_image, to_rgb
from .inputs import expand_inputs
from .transforms import IMAGENET_MEAN, IMAGENET_STD, TF_MEAN, TF_STD, Preprocessing

__all__ = ["IMAGE_EXTENSIONS", "IMAGENET_MEAN", "IMAGENET_STD", "Preprocessing", "TF_MEAN", "TF_STD",
           "expand_inputs", "load_image", "to_rgb"]
