"""Clip frame sampling: which frames, from folders, flat files and videos; padding; errors."""

import itertools
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_prep.frames import (
    ClipIndex,
    FrameError,
    FrameSpec,
    load_frames,
    load_image,
    read_video_tail,
    sample_positions,
)

GREY_STEP = 18  # frame k is a flat grey of level GREY_BASE + k * GREY_STEP: JPEG keeps it within +-3
GREY_BASE = 10


def grey(k: int) -> int:
    return GREY_BASE + k * GREY_STEP


def frame_index(image: Image.Image) -> int:
    """Which frame a loaded image is, from its grey level."""
    level = float(np.asarray(image.convert("L")).mean())
    return round((level - GREY_BASE) / GREY_STEP)


def write_folder_clip(folder: Path, length: int, size=(40, 24)) -> None:
    folder.mkdir(parents=True)
    for k in range(length):
        Image.new("RGB", size, (grey(k),) * 3).save(folder / f"{k:03d}.jpg", quality=95)


def write_video(path: Path, length: int, size=(48, 32), fps: int = 5) -> None:
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "0"}  # lossless: grey levels survive exactly
        for k in range(length):
            frame = av.VideoFrame.from_image(Image.new("RGB", size, (grey(k),) * 3))
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


# ---------------------------------------------------------------------------------------------
# Which frames


def test_sample_positions_examples():
    assert sample_positions(5, FrameSpec(frames=3, stride=1)) == [2, 3, 4]
    assert sample_positions(5, FrameSpec(frames=3, stride=2)) == [0, 2, 4]
    assert sample_positions(5, FrameSpec(frames=4, stride=2)) == [0, 0, 2, 4]  # padded
    assert sample_positions(2, FrameSpec(frames=5, stride=1)) == [0, 0, 0, 0, 1]
    assert sample_positions(1, FrameSpec(frames=1, stride=2)) == [0]


@pytest.mark.parametrize("frames, stride, available", itertools.product(range(1, 6), (1, 2), (1, 2, 5, 9)))
def test_sample_positions_step_back_from_the_annotated_frame(frames, stride, available):
    positions = sample_positions(available, FrameSpec(frames=frames, stride=stride))
    assert len(positions) == frames
    assert positions[-1] == available - 1
    # Going back in time each frame is `stride` earlier; once that would fall before the clip's
    # start, the earliest frame (0) is repeated.
    for earlier, later in zip(positions, positions[1:]):
        assert earlier == (later - stride if later - stride >= 0 else 0)
    if available >= (frames - 1) * stride + 1:  # long enough: no padding, distinct frames
        assert len(set(positions)) == frames
    else:
        assert positions[0] == 0


def test_short_clip_error_policy_names_the_clip(tmp_path):
    write_folder_clip(tmp_path / "clips" / "c1", 2)
    source = ClipIndex(tmp_path / "clips").source("c1", tmp_path / "data" / "c1.jpg", 4)
    with pytest.raises(FrameError, match=r"c1.*has 2 frame\(s\), fewer than the 4"):
        load_frames(source, FrameSpec(frames=4, stride=1, image_size=16, short_clip="error"))


@pytest.mark.parametrize("frames, stride", itertools.product(range(1, 6), (1, 2)))
@pytest.mark.parametrize("length", [5, 3])
def test_folder_clip_frames(tmp_path, frames, stride, length):
    write_folder_clip(tmp_path / "clips" / "c1", length)
    source = ClipIndex(tmp_path / "clips").source("c1", tmp_path / "data" / "c1.jpg", frames)
    assert source.kind == "folder"
    images = load_frames(source, FrameSpec(frames=frames, stride=stride, image_size=20))
    got = [frame_index(im) for im in images]
    assert got == sample_positions(length, FrameSpec(frames=frames, stride=stride))
    assert got[-1] == length - 1  # always ends on the annotated frame


def test_flat_frames_sort_numerically(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for k in range(12):  # "_10" and "_11" sort after "_9" only when sorted as numbers
        Image.new("RGB", (40, 24), (grey(k),) * 3).save(folder / f"vid_a_{k}.jpg", quality=95)
    Image.new("RGB", (40, 24), (0, 0, 0)).save(folder / "other_0.jpg")
    source = ClipIndex(folder).source("vid_a", tmp_path / "data" / "vid_a.jpg", 3)
    assert source.kind == "flat" and len(source.paths) == 12
    images = load_frames(source, FrameSpec(frames=3, stride=2, image_size=20))
    assert [frame_index(im) for im in images] == [7, 9, 11]


@pytest.mark.parametrize("frames, stride, length", [(3, 2, 6), (4, 1, 6), (4, 2, 3), (1, 1, 4)])
def test_video_clip_frames(tmp_path, frames, stride, length):
    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "v1.mp4", length)
    source = ClipIndex(videos_dir=videos).source("v1", tmp_path / "data" / "v1.jpg", frames)
    assert source.kind == "video"
    spec = FrameSpec(frames=frames, stride=stride, image_size=24)
    images = load_frames(source, spec)
    assert [frame_index(im) for im in images] == sample_positions(length, spec)
    assert all(max(im.size) == 24 and im.mode == "RGB" for im in images)


def test_video_tail_keeps_only_what_it_needs(tmp_path):
    write_video(tmp_path / "v.mp4", 9)
    tail = read_video_tail(tmp_path / "v.mp4", 3)
    assert [frame_index(im) for im in tail] == [6, 7, 8]


# ---------------------------------------------------------------------------------------------
# Last frames only, errors


def test_last_frame_serves_one_frame_and_refuses_more(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    Image.new("RGB", (64, 36), (grey(3),) * 3).save(data / "x.jpg")
    clips = tmp_path / "clips"
    clips.mkdir()
    index = ClipIndex(clips)
    source = index.source("x", data / "x.jpg", 1)
    assert source.kind == "last_frame"
    [image] = load_frames(source, FrameSpec(frames=1, image_size=32))
    assert frame_index(image) == 3 and image.size == (32, 18)
    with pytest.raises(FrameError) as info:
        index.source("x", data / "x.jpg", 4)
    message = str(info.value)
    assert "no clip frames found" in message and str(clips / "x") in message
    assert str(data / "x.jpg") in message


def test_corrupt_and_missing_frames_are_named(tmp_path):
    write_folder_clip(tmp_path / "clips" / "c1", 4)
    bad = tmp_path / "clips" / "c1" / "003.jpg"
    bad.write_bytes(bad.read_bytes()[:40])  # truncated JPEG
    source = ClipIndex(tmp_path / "clips").source("c1", tmp_path / "c1.jpg", 2)
    with pytest.raises(FrameError, match="003.jpg.*corrupt") as info:
        load_frames(source, FrameSpec(frames=2, image_size=16))
    assert info.value.path == str(bad)
    with pytest.raises(FrameError, match="missing.jpg.*missing"):
        load_image(tmp_path / "missing.jpg", 16, "c9")


def test_corrupt_video_is_named(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "v1.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    source = ClipIndex(videos_dir=videos).source("v1", tmp_path / "v1.jpg", 2)
    with pytest.raises(FrameError, match=r"v1\.mp4.*(corrupt|no decodable)"):
        load_frames(source, FrameSpec(frames=2, image_size=16))


def test_missing_frames_folder_is_an_error(tmp_path):
    with pytest.raises(FrameError, match="does not exist"):
        ClipIndex(tmp_path / "nowhere")


# ---------------------------------------------------------------------------------------------
# Resizing


@pytest.mark.parametrize("size, mode, expected", [((200, 100), "L", (50, 25)), ((30, 90), "RGBA", (17, 50)),
                                                   ((20, 10), "P", (50, 25))])
def test_frames_are_rgb_with_the_longest_edge_resized(tmp_path, size, mode, expected):
    path = tmp_path / "f.png"
    Image.new(mode, size).save(path)
    image = load_image(path, 50)
    assert image.mode == "RGB" and image.size == expected


def test_jpeg_draft_decoding_still_gives_the_exact_size(tmp_path):
    path = tmp_path / "big.jpg"
    Image.new("RGB", (1280, 720), (200, 30, 30)).save(path)
    image = load_image(path, 64)
    assert image.size == (64, 36)
    assert np.abs(np.asarray(image).astype(int) - [200, 30, 30]).max() <= 6
