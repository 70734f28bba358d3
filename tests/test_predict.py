"""evaluate/predict.py: sliding windows over a video or a folder of frames, JSON lines, clear errors."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from data_prep.frames import FrameError, FrameSpec
from evaluate import predict

VIDEO_FPS = 5
VIDEO_FRAMES = 7
FRAME_SIZE = (64, 36)
WINDOW_KEYS = {"window", "time", "frame", "frames", "description", "actions", "reasons", "justification",
               "raw", "latency_s"}


def colour(k: int) -> tuple[int, int, int]:
    return (30 * k % 256, 255 - 30 * k % 256, 128)


def write_video(path, frames=VIDEO_FRAMES, fps=VIDEO_FPS):
    import av

    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = FRAME_SIZE
        stream.pix_fmt = "yuv420p"
        for k in range(frames):
            for packet in stream.encode(av.VideoFrame.from_image(Image.new("RGB", FRAME_SIZE, colour(k)))):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def fake_frames(count):
    return iter([predict.Frame(k, k / VIDEO_FPS, Image.new("RGB", FRAME_SIZE, colour(k))) for k in range(count)])


# ---------------------------------------------------------------------------------------------
# Windows (no model)


@pytest.mark.parametrize(
    "count, frames, stride, hop, expected",
    [
        (7, 4, 1, 1, [[0, 1, 2, 3], [1, 2, 3, 4], [2, 3, 4, 5], [3, 4, 5, 6]]),
        (7, 4, 1, 2, [[0, 1, 2, 3], [2, 3, 4, 5]]),
        (7, 4, 2, 1, [[0, 2, 4, 6]]),
        (9, 2, 3, 1, [[0, 3], [1, 4], [2, 5], [3, 6], [4, 7], [5, 8]]),
    ],
)
def test_window_frame_indices(count, frames, stride, hop, expected):
    spec = FrameSpec(frames=frames, stride=stride, image_size=64)
    windows = list(predict.iter_windows(fake_frames(count), spec, hop))
    assert [[f.index for f in w.frames] for w in windows] == expected
    assert [w.number for w in windows] == list(range(len(expected)))


def test_short_input_pads_with_earliest_frame_or_errors():
    padded = list(predict.iter_windows(fake_frames(2), FrameSpec(frames=4, stride=1, image_size=64)))
    assert [[f.index for f in w.frames] for w in padded] == [[0, 0, 0, 1]]
    with pytest.raises(FrameError, match="short.mp4"):
        list(predict.iter_windows(fake_frames(2), FrameSpec(frames=4, stride=1, image_size=64, short_clip="error"),
                                  source="short.mp4"))


def test_folder_frames_in_natural_order(tmp_path):
    for k in (10, 2, 1):  # written out of order; "frame_10" sorts after "frame_2"
        Image.new("RGB", FRAME_SIZE, colour(k)).save(tmp_path / f"frame_{k}.png")
    (tmp_path / "notes.txt").write_text("not a frame")
    frames = list(predict.iter_input_frames(tmp_path, image_size=32, fps=2.0))
    assert [f.image.getpixel((0, 0)) for f in frames] == [colour(1), colour(2), colour(10)]
    assert [f.time for f in frames] == [0.0, 0.5, 1.0]
    assert frames[0].image.size == (32, 18)  # longest edge resized


def test_video_frames_carry_timestamps(tmp_path):
    video = write_video(tmp_path / "clip.mp4")
    frames = list(predict.iter_input_frames(video, image_size=64))
    assert len(frames) == VIDEO_FRAMES
    assert [round(f.time, 3) for f in frames] == [round(k / VIDEO_FPS, 3) for k in range(VIDEO_FRAMES)]
    resampled = list(predict.iter_input_frames(video, image_size=64, sample_fps=VIDEO_FPS / 2))
    assert [round(f.time, 3) for f in resampled] == [0.0, 0.4, 0.8, 1.2]


# ---------------------------------------------------------------------------------------------
# The CLI on the tiny model


def test_predict_video_writes_one_json_line_per_window(tmp_path, tiny_vlm_dir, capsys):
    video = write_video(tmp_path / "drive.mp4")
    out = tmp_path / "pred.jsonl"
    rc = predict.main(["--model", str(tiny_vlm_dir), "--input", str(video), "--frames", "4", "--stride", "1",
                       "--max-new-tokens", "8", "--out", str(out), "--no-progress"])
    assert rc == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == VIDEO_FRAMES - 4 + 1
    for i, record in enumerate(records):
        assert set(record) == WINDOW_KEYS
        assert record["window"] == i and record["frames"] == [i, i + 1, i + 2, i + 3]
        assert record["time"] == pytest.approx((i + 3) / VIDEO_FPS)
        assert isinstance(record["raw"], str) and record["latency_s"] > 0
        assert set(record["actions"]) <= {"forward", "stop", "left", "right"}
    summary_line = capsys.readouterr().out.strip().splitlines()[-1]
    summary = json.loads(summary_line)["summary"]
    assert summary["windows"] == len(records)
    assert summary["latency_p50_s"] <= summary["latency_p90_s"]


def test_predict_folder_to_stdout(tmp_path, tiny_vlm_dir, capsys):
    frames = tmp_path / "frames"
    frames.mkdir()
    for k in range(3):
        Image.new("RGB", FRAME_SIZE, colour(k)).save(frames / f"{k:03d}.jpg")
    rc = predict.main(["--model", str(tiny_vlm_dir), "--input", str(frames), "--frames", "2", "--fps", "10",
                       "--max-new-tokens", "4", "--no-progress"])
    assert rc == 0
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["time"] for r in records] == [0.1, 0.2]
    assert '"summary"' in captured.err.splitlines()[-1]


# ---------------------------------------------------------------------------------------------
# Unreadable input: the error names the file


def _run_error(tiny_vlm_dir, capsys, *args):
    rc = predict.main(["--model", str(tiny_vlm_dir), "--no-progress", "--max-new-tokens", "4", *args])
    assert rc == 2
    return capsys.readouterr().err


def test_missing_input_is_named(tmp_path, tiny_vlm_dir, capsys):
    err = _run_error(tiny_vlm_dir, capsys, "--input", str(tmp_path / "nowhere.mp4"))
    assert "nowhere.mp4" in err and "not found" in err


def test_corrupt_video_is_named(tmp_path, tiny_vlm_dir, capsys):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"this is not a video" * 50)
    err = _run_error(tiny_vlm_dir, capsys, "--input", str(bad))
    assert "broken.mp4" in err and "corrupt" in err


def test_folder_without_images_is_named(tmp_path, tiny_vlm_dir, capsys):
    empty = tmp_path / "empty_frames"
    empty.mkdir()
    (empty / "readme.txt").write_text("no frames here")
    err = _run_error(tiny_vlm_dir, capsys, "--input", str(empty))
    assert "empty_frames" in err and "no images" in err


def test_corrupt_frame_is_named(tmp_path, tiny_vlm_dir, capsys):
    folder = tmp_path / "frames"
    folder.mkdir()
    Image.new("RGB", FRAME_SIZE).save(folder / "000.jpg")
    (folder / "001.jpg").write_bytes(b"not a jpeg")
    err = _run_error(tiny_vlm_dir, capsys, "--input", str(folder), "--frames", "2")
    assert "001.jpg" in err


def test_too_few_frames_with_error_policy_is_named(tmp_path, tiny_vlm_dir, capsys):
    video = write_video(tmp_path / "tiny_clip.mp4", frames=2)
    err = _run_error(tiny_vlm_dir, capsys, "--input", str(video), "--frames", "4", "--short-input", "error")
    assert "tiny_clip.mp4" in err and "fewer" in err
