"""Video data: the synthetic clip generator and the frame reader (folders, lists, GIFs, errors)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from archlab.data.video import FrameSizeError, read_frames, synthetic_video
from archlab.errors import ArchlabError

pytest.importorskip("skimage")
iio = pytest.importorskip("imageio.v3")


def test_synthetic_video_shape_range_and_seeding():
    a = synthetic_video(6, (24, 32), torch.Generator().manual_seed(3))
    b = synthetic_video(6, (24, 32), torch.Generator().manual_seed(3))
    c = synthetic_video(6, (24, 32), torch.Generator().manual_seed(4))
    assert a.shape == (6, 3, 24, 32) and a.dtype == torch.float32
    assert 0 <= a.min() and a.max() <= 1
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c)


def test_synthetic_video_moves_smoothly():
    """Neighbouring frames are closer than frames far apart (a moving camera, not noise)."""
    v = synthetic_video(16, (32, 32), torch.Generator().manual_seed(0))
    near = (v[1:] - v[:-1]).abs().mean()
    far = (v[8:] - v[:8]).abs().mean()
    assert 0 < near < far


def test_synthetic_video_bad_arguments():
    with pytest.raises(ArchlabError, match="n_frames"):
        synthetic_video(1)
    with pytest.raises(ArchlabError, match="8x8"):
        synthetic_video(4, (4, 4))


def _frames(n, h=8, w=10):
    return (np.random.default_rng(0).random((n, h, w, 3)) * 255).astype(np.uint8)


def test_read_frames_from_folder_list_and_gif(tmp_path):
    frames = _frames(3)
    for i, f in enumerate(frames):
        iio.imwrite(tmp_path / f"{i:03d}.png", f)
    clip = read_frames(tmp_path)
    assert clip.shape == (3, 3, 8, 10) and clip.dtype == torch.float32
    torch.testing.assert_close(clip, torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255)
    reversed_clip = read_frames([tmp_path / "002.png", tmp_path / "000.png"])
    torch.testing.assert_close(reversed_clip[0], clip[2])
    iio.imwrite(tmp_path / "clip.gif", frames)
    gif = read_frames(tmp_path / "clip.gif")
    assert gif.shape == (3, 3, 8, 10)


def test_read_frames_grey_to_rgb(tmp_path):
    iio.imwrite(tmp_path / "a.png", np.full((6, 6), 128, np.uint8))
    clip = read_frames([tmp_path / "a.png"])
    assert clip.shape == (1, 3, 6, 6)
    torch.testing.assert_close(clip[0, 0], clip[0, 2])


def test_frames_of_different_sizes_are_one_line_naming_the_size(tmp_path):
    iio.imwrite(tmp_path / "0.png", _frames(1)[0])
    iio.imwrite(tmp_path / "1.png", _frames(1, 8, 12)[0])
    with pytest.raises(FrameSizeError, match="expected 8x10") as e:
        read_frames(tmp_path)
    assert "\n" not in str(e.value) and "1.png is 8x12" in str(e.value)


def test_read_frames_missing_or_empty(tmp_path):
    with pytest.raises(ArchlabError, match="no such file"):
        read_frames(tmp_path / "nope")
    with pytest.raises(ArchlabError, match="no image files"):
        read_frames(tmp_path)
    (tmp_path / "bad.gif").write_bytes(b"not a gif")
    with pytest.raises(ArchlabError, match="cannot read"):
        read_frames(tmp_path / "bad.gif")
