import dataclasses
import math

import pytest
import torch
from torch import nn

from core.augment import Augment, Draw, apply, build_augment
from core.config import AugmentConfig
from core.data import CaptchaDataset, make_loader, scan_folder
from core.engine import train_one_epoch
from core.labels import build_codec

CPU = torch.device("cpu")
H, W = 46, 284


def plain(b=1, c=3, angle=0.0, scale=1.0, shift=(0.0, 0.0), contrast=1.0, gain=1.0,
          brightness=0.0, shear=0.0, blurred=0.0, noise=0.0) -> Draw:
    return Draw(angle=torch.full((b,), angle), scale=torch.full((b,), scale),
                shift=torch.tensor([shift] * b), contrast=torch.full((b, 1, 1, 1), contrast),
                gain=torch.full((b, c, 1, 1), gain), brightness=torch.full((b, 1, 1, 1), brightness),
                shear=torch.full((b,), shear), blurred=torch.full((b, 1, 1, 1), blurred),
                noise=torch.full((b, 1, 1, 1), noise))


def centroid(image: torch.Tensor) -> tuple[float, float]:
    """(x, y) of the brightness of a (1, C, H, W) image, in pixels."""
    weight = image[0].sum(0)
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float32),
                            torch.arange(W, dtype=torch.float32), indexing="ij")
    return float((weight * xs).sum() / weight.sum()), float((weight * ys).sum() / weight.sum())


def dot(x: int, y: int) -> torch.Tensor:
    image = torch.zeros((1, 3, H, W), dtype=torch.uint8)
    image[0, :, y - 1:y + 2, x - 1:x + 2] = 255
    return image


def test_no_change_gives_back_the_image():
    images = torch.randint(0, 256, (4, 3, H, W), dtype=torch.uint8)
    out = apply(images, plain(4))
    assert out.dtype == torch.float32 and out.shape == images.shape
    assert torch.allclose(out, images.float(), atol=0.01)   # grid coordinates round a little


def test_shift_moves_the_content_by_the_fraction_of_the_size():
    out = apply(dot(100, 20), plain(shift=(0.05, 0.1)))
    x, y = centroid(out)
    assert x == pytest.approx(100 + 0.05 * W, abs=0.3)
    assert y == pytest.approx(20 + 0.1 * H, abs=0.3)


@pytest.mark.parametrize("degrees", [-8.0, 6.0])
def test_rotation_turns_about_the_centre_in_pixels_not_in_normalised_coordinates(degrees):
    # 60 px right of and 6 px above the centre: on a 284x46 image, mixing up the two axes'
    # scales would move the dot up or down six times as far as a rotation does.
    cx, cy = (W - 1) / 2, (H - 1) / 2
    dx, dy = 60.0, -6.0
    image = dot(round(cx + dx), round(cy + dy))
    x0, y0 = centroid(image)
    a = math.radians(degrees)
    out = apply(image, plain(angle=a, scale=1.1))
    x, y = centroid(out)
    ex = cx + 1.1 * (math.cos(a) * (x0 - cx) - math.sin(a) * (y0 - cy))
    ey = cy + 1.1 * (math.sin(a) * (x0 - cx) + math.cos(a) * (y0 - cy))
    assert (x, y) == (pytest.approx(ex, abs=0.6), pytest.approx(ey, abs=0.6))


def test_photometry_is_contrast_about_the_mean_then_gain_and_brightness():
    images = torch.zeros((1, 3, H, 8 * 16), dtype=torch.uint8)
    images[..., :64] = 100
    images[..., 64:] = 200          # mean 150
    out = apply(images, plain(contrast=1.5, gain=0.9, brightness=-10.0))
    assert out[0, 0, 5, 10].item() == pytest.approx(((100 - 150) * 1.5 + 150) * 0.9 - 10, abs=1e-3)
    assert out[0, 0, 5, 100].item() == pytest.approx(((200 - 150) * 1.5 + 150) * 0.9 - 10, abs=1e-3)
    bright = apply(images, plain(brightness=120.0))
    assert bright.max().item() == 255.0 and bright.min().item() == 220.0   # clamped


def test_draws_stay_within_the_configured_limits_and_vary():
    cfg = AugmentConfig(shift_x=0.02, shift_y=0.1, rotate_degrees=5.0, scale=0.1, brightness=0.1,
                        contrast=0.2, colour=0.05)
    torch.manual_seed(0)
    d = Augment(cfg).draw(4000, 3, CPU)
    for values, limit in ((d.angle, math.radians(5.0)), (d.scale - 1, 0.1),
                          (d.shift[:, 0], 0.02), (d.shift[:, 1], 0.1), (d.contrast - 1, 0.2),
                          (d.gain - 1, 0.05), (d.brightness, 0.1 * 255)):
        assert values.abs().max() <= limit + 1e-6
        assert values.abs().max() > 0.9 * limit        # the whole range is used
    assert d.gain.shape == (4000, 3, 1, 1)


def test_seeded_draws_repeat_and_differ_per_image():
    images = torch.randint(0, 256, (6, 3, H, W), dtype=torch.uint8)
    augment = Augment(AugmentConfig())
    torch.manual_seed(3)
    a = augment(images)
    torch.manual_seed(3)
    b = augment(images)
    assert torch.equal(a, b)
    same = images[:1].repeat(6, 1, 1, 1)
    out = augment(same)
    assert not torch.allclose(out[0], out[1])
    assert 0 <= out.min() and out.max() <= 255


def test_share_changes_that_fraction_of_the_images_and_passes_the_rest_exactly():
    torch.manual_seed(0)
    images = torch.randint(0, 256, (400, 3, H, W), dtype=torch.uint8)
    for share in (0.0, 0.5, 1.0):
        out = build_augment(dataclasses.replace(AugmentConfig(), share=share))(images)
        exact = (out == images.float()).flatten(1).all(1)
        assert out.dtype == torch.float32
        assert int((~exact).sum()) == pytest.approx(share * 400, abs=40)


def _probe_training(captcha_dir, cfg, augment):
    """The batches a model is fed by one epoch of train_one_epoch over 8 captchas with
    `augment`, and the batch as the loader read it."""
    codec = build_codec(cfg.labels)
    items = scan_folder(captcha_dir, cfg.labels)[:8]
    loader = make_loader(CaptchaDataset(captcha_dir, items, codec, cfg.image), 8, 0, CPU)
    seen = []

    class Probe(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(codec.output_steps, codec.output_classes))

        def forward(self, images):
            seen.append(images)
            return self.w.expand(images.shape[0], -1, -1)

    model = Probe()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    train_one_epoch(model, loader, codec, optimizer, CPU, augment=augment)
    return seen, next(iter(loader))["image"]


def test_training_feeds_the_model_the_augmented_batch(captcha_dir, cfg):
    seen, _ = _probe_training(captcha_dir, cfg, augment=lambda x: torch.zeros_like(x) + 7)
    assert len(seen) == 1 and torch.all(seen[0] == 7)
    # the job's own augmentation, every image drawn for it: none reaches the model as read
    seen, read = _probe_training(captcha_dir, cfg, build_augment(
        dataclasses.replace(AugmentConfig(), share=1.0)))
    assert not any(torch.equal(a.float(), b.float()) for a, b in zip(seen[0], read))


def test_disabled_augmentation_feeds_the_images_as_read(captcha_dir, cfg):
    seen, read = _probe_training(captcha_dir, cfg, build_augment(
        dataclasses.replace(AugmentConfig(), enabled=False)))
    assert len(seen) == 1 and torch.equal(seen[0].float(), read.float())


def test_shear_slants_a_vertical_stroke_by_the_fraction_of_the_height():
    image = torch.zeros((1, 3, H, W), dtype=torch.uint8)
    image[0, :, :, 140:143] = 255
    out = apply(image, plain(shear=0.2))[0].sum(0)
    top, bottom = (float((row * torch.arange(W)).sum() / row.sum()) for row in (out[2], out[-3]))
    assert abs(top - bottom) == pytest.approx(0.2 * (H - 5), rel=0.1)


def test_blur_smooths_only_the_images_drawn_for_it_and_keeps_the_mean():
    stripes = torch.zeros((2, 3, H, W), dtype=torch.uint8)
    stripes[:, :, :, ::2] = 200
    out = apply(stripes, plain(2))
    blurred = apply(stripes, Draw(**{**dataclasses.asdict(plain(2)),
                                     "blurred": torch.tensor([1.0, 0.0]).view(2, 1, 1, 1)}))
    assert torch.allclose(blurred[1], out[1])
    assert float(blurred[0].std()) < 0.6 * float(out[0].std())
    assert float(blurred[0].mean()) == pytest.approx(float(out[0].mean()), rel=0.02)


def test_noise_has_the_drawn_standard_deviation():
    grey = torch.full((1, 3, H, W), 128, dtype=torch.uint8)
    torch.manual_seed(0)
    out = apply(grey, plain(noise=6.0))
    assert float((out - 128).std()) == pytest.approx(6.0, rel=0.05)
    assert torch.equal(apply(grey, plain()), grey.float())


def test_the_sampling_grid_is_torchs_affine_grid():
    from core.augment import _sampling_grid
    torch.manual_seed(1)
    rows = torch.randn(6, 5) * 0.3
    theta = torch.stack([torch.stack([rows[:, 0] + 1, rows[:, 1], rows[:, 2]], 1),
                         torch.stack([rows[:, 3], rows[:, 4] + 1, -rows[:, 2]], 1)], 1)
    expected = nn.functional.affine_grid(theta, [6, 3, 17, 53], align_corners=False)
    grid = _sampling_grid(*theta[:, 0].unbind(1), *theta[:, 1].unbind(1), 17, 53)
    assert grid.shape == expected.shape
    assert torch.allclose(grid, expected, atol=1e-6)


def test_blur_is_the_121_kernel_each_way_with_edges_repeated():
    from core.augment import _blur121
    torch.manual_seed(2)
    x = torch.rand(2, 3, 9, 14) * 255
    k = torch.tensor([0.25, 0.5, 0.25])
    kernel = (k.view(3, 1) * k.view(1, 3)).expand(3, 1, 3, 3)
    expected = nn.functional.conv2d(nn.functional.pad(x, (1, 1, 1, 1), mode="replicate"),
                                    kernel, groups=3)
    assert torch.allclose(_blur121(x), expected, atol=1e-4)


def test_noise_is_grey_the_same_on_every_channel():
    grey = torch.full((2, 3, H, W), 128, dtype=torch.uint8)
    out = apply(grey, plain(2, noise=6.0))
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])
    assert not torch.equal(out[0], out[1])


def warped(points) -> Draw:
    """plain(), with the warp's x and y displacements at points spread along the width."""
    return Draw(**{**dataclasses.asdict(plain()), "warp": torch.tensor([points], dtype=torch.float32)})


def test_an_even_warp_moves_the_content_by_its_fraction_of_the_height():
    x, y = centroid(apply(dot(100, 20), warped([[0.1] * 3, [-0.1] * 3])))
    # the grid says where each output pixel samples the input: content moves the other way
    assert (x, y) == (pytest.approx(100 - 0.1 * H, abs=0.3), pytest.approx(20 + 0.1 * H, abs=0.3))


def test_a_warp_that_grows_along_the_width_squeezes_the_text_between_its_points():
    a = 0.2
    image = torch.maximum(dot(90, 23), dot(190, 23))
    columns = apply(image, warped([[-a, 0.0, a], [0.0, 0.0, 0.0]]))[0].sum((0, 1))
    xs = torch.arange(W, dtype=torch.float32)
    half = W // 2
    left, right = (float((columns[part] * xs[part]).sum() / columns[part].sum())
                   for part in (slice(0, half), slice(half, W)))
    assert right - left == pytest.approx(100 / (1 + 2 * a * H / (W - 1)), rel=0.02)


def test_warp_draws_have_two_points_a_height_and_stay_within_the_limit():
    torch.manual_seed(0)
    d = Augment(AugmentConfig(warp=0.08)).draw(2000, 3, CPU, aspect=W / H)
    assert d.warp.shape == (2000, 2, round(2 * W / H) + 1)
    assert d.warp.abs().max() <= 0.08 and d.warp.abs().max() > 0.07
    assert Augment(AugmentConfig()).draw(4, 3, CPU, aspect=W / H).warp is None   # 0: no warp
    images = torch.randint(0, 256, (8, 3, H, W), dtype=torch.uint8)
    torch.manual_seed(5)
    a = Augment(AugmentConfig(warp=0.08, share=0.5))(images)
    torch.manual_seed(5)
    assert torch.equal(a, Augment(AugmentConfig(warp=0.08, share=0.5))(images))
