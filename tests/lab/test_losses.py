"""Dense losses: values on hand-made cases, empty classes, shape errors."""

import pytest
import torch

from archlab.lab import losses


def test_dice_loss_perfect_and_wrong():
    target = torch.tensor([[[0, 1], [2, 2]]])  # (1, 2, 2)
    perfect = 50.0 * torch.nn.functional.one_hot(target, 3).movedim(-1, 1).float()
    assert losses.dice_loss(perfect, target).item() == pytest.approx(0.0, abs=1e-6)
    wrong = 50.0 * torch.nn.functional.one_hot((target + 1) % 3, 3).movedim(-1, 1).float()
    assert losses.dice_loss(wrong, target, eps=0.0).item() == pytest.approx(1.0, abs=1e-6)
    # all-background target and prediction: the smoothed Dice of empty classes is 1 -> loss 0
    bg = torch.zeros(1, 2, 2, dtype=torch.long)
    logits = torch.tensor([50.0, -50.0, -50.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    assert losses.dice_loss(logits, bg).item() == pytest.approx(0.0, abs=1e-6)


def test_dice_loss_binary_and_gradients():
    logits = torch.zeros(2, 1, 4, 4, requires_grad=True)
    target = torch.zeros(2, 4, 4, dtype=torch.long)
    target[:, :2] = 1
    loss = losses.ce_dice_loss(torch.cat([-logits, logits], 1), target)
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    assert 0 < losses.dice_loss(logits, target).item() < 1


def test_restoration_and_density_losses():
    a, b = torch.zeros(2, 1, 3, 3), torch.ones(2, 1, 3, 3)
    assert losses.charbonnier(a, b, eps=0.0).item() == pytest.approx(1.0)
    mask = torch.zeros(2, 1, 3, 3)
    assert losses.masked_l1(a, b, mask).item() == 0.0
    mask[:, :, 0] = 1
    assert losses.masked_l1(a, b * 2, mask).item() == pytest.approx(2.0)
    assert losses.density_mse(a, b).item() == pytest.approx(9.0)
    assert losses.density_mse(a, b, reduction="mean").item() == pytest.approx(1.0)


def test_shape_errors():
    with pytest.raises(ValueError, match="expected logits"):
        losses.ce_dice_loss(torch.zeros(1, 3, 4, 4), torch.zeros(1, 4, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="shapes differ"):
        losses.charbonnier(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 3))
