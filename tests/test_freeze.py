"""Freezing, unfreezing, and BatchNorm statistics for weights imported from TFLite."""
import copy

import torch
from PIL import Image

from helpers import needs_shared_tflite
from mobiclass import create_model
from mobiclass.train.freeze import (has_folded_batchnorm, reestimate_batchnorm, resolved_unfreeze, set_trainable,
                                    train_mode, trainable_blocks)


def test_unfreeze_counts_blocks_from_the_top():
    model = create_model("mobilenet_v2", num_classes=3)
    assert len(model.backbone_blocks()) == 19
    assert trainable_blocks(model, "2") == model.backbone_blocks()[-2:]
    assert trainable_blocks(model, "none") == [] and len(trainable_blocks(model, "all")) == 19
    set_trainable(model, "2")
    trainable = {n.split(".")[0] + "." + n.split(".")[1] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"features.17", "features.18", "classifier.1"}


def test_auto_fine_tunes_the_last_eight_pretrained_blocks_and_every_block_from_scratch():
    model = create_model("efficientnet_lite0", num_classes=3)
    assert resolved_unfreeze("auto", from_scratch=False) == "8"
    assert resolved_unfreeze("auto", from_scratch=True) == "all"
    assert resolved_unfreeze("3", from_scratch=True) == "3"
    blocks, last_eight = model.backbone_blocks(), trainable_blocks(model, "8")
    assert len(blocks) == 18 and len(last_eight) == 8 and last_eight[0] is blocks[10]
    assert len(trainable_blocks(model, "40")) == 18  # more than there are: all of them


def test_frozen_blocks_keep_their_batchnorm_statistics():
    model = create_model("efficientnet_lite0", num_classes=3)
    blocks = set_trainable(model, "3")
    train_mode(model, blocks, freeze_bn=False)
    assert model._blocks[-1]._bn1.training and not model._blocks[0]._bn1.training and not model._bn0.training
    train_mode(model, blocks, freeze_bn=True)
    assert not any(m.training for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))


@needs_shared_tflite
def test_reestimated_batchnorm_keeps_the_function_and_fixes_train_mode(mobilenet_v2_tflite, photos):
    model = create_model("mobilenet_v2", padding="tf")
    model.load_state_dict(mobilenet_v2_tflite.module.state_dict())
    assert has_folded_batchnorm(model)
    prep = mobilenet_v2_tflite.preprocessing
    batch = torch.stack([torch.from_numpy(prep(Image.open(p).convert("RGB"))) for p in photos.values()])
    model.classifier[0].p = 0.0  # no dropout: compare the convolutional function itself
    untouched = copy.deepcopy(model)
    model.eval()
    with torch.no_grad():
        before = model(batch)
        broken = untouched.train()(batch)  # batch statistics meet BatchNorms that expect none: destroyed
    reestimate_batchnorm(model, [batch])
    assert not has_folded_batchnorm(model)
    model.eval()
    with torch.no_grad():
        after = model(batch)
        model.train()
        normalised = model(batch)
    assert torch.allclose(before, after, atol=1e-4)  # eval mode computes the same function
    assert torch.allclose(normalised, before, atol=1e-3)  # and so does train mode, on the measured images
    assert (broken.argmax(1) == before.argmax(1)).float().mean() < 1.0
