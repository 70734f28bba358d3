"""Shared pytest fixtures. Add yours below; do not rewrite others'."""

# --- tiny models (tiny_models/): built once per test session -------------------------------------
# tiny_models_dir: the --out folder; tiny_vlm_dir: <out>/tiny-smolvlm (load with AutoProcessor /
# AutoModelForImageTextToText); tiny_clip_dir: <out>/tiny-clip; tiny_clip: the open_clip model name
# for it ("local-dir:<path>"), as rewards.clip_model.load_clip(tiny_clip) takes it.
import pytest


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory):
    from tiny_models import CLIP_DIR_NAME, VLM_DIR_NAME
    from tiny_models.clip import TinyClipConfig, build_tiny_clip, save_tiny_clip
    from tiny_models.vlm import TinyVLMConfig, build_tiny_vlm, save_tiny_vlm

    out = tmp_path_factory.mktemp("tiny_models")
    model, processor = build_tiny_vlm(TinyVLMConfig(seed=0))
    save_tiny_vlm(model, processor, out / VLM_DIR_NAME)
    clip_cfg = TinyClipConfig(seed=0)
    save_tiny_clip(build_tiny_clip(clip_cfg), clip_cfg, out / CLIP_DIR_NAME)
    return out


@pytest.fixture(scope="session")
def tiny_vlm_dir(tiny_models_dir):
    from tiny_models import VLM_DIR_NAME

    return tiny_models_dir / VLM_DIR_NAME


@pytest.fixture(scope="session")
def tiny_clip_dir(tiny_models_dir):
    from tiny_models import CLIP_DIR_NAME

    return tiny_models_dir / CLIP_DIR_NAME


@pytest.fixture(scope="session")
def tiny_clip(tiny_clip_dir):
    from tiny_models.clip import local_dir_name

    return local_dir_name(tiny_clip_dir)


# --- data_prep: a small synthetic world and a dataset prepared from it (session-wide, READ-ONLY:
# copy them before changing anything, e.g. shutil.copytree(small_synth_world, tmp_path / "w")) ---
SMALL_WORLD_CLIPS = 120
SMALL_WORLD_SIZE = (64, 36)  # width, height: 16:9 like BDD-OIA, even for --videos


@pytest.fixture(scope="session")
def small_synth_world(tmp_path_factory):
    """A synthetic BDD-OIA release: data/, clips/ (5 frames each), six annotation files,
    descriptions.json, truth.json. 120 clips, 64x36 frames, seed 0."""
    from data_prep.synth import WorldConfig, generate

    root = tmp_path_factory.mktemp("small_synth") / "world"
    width, height = SMALL_WORLD_SIZE
    generate(root, SMALL_WORLD_CLIPS, seed=0, config=WorldConfig(width=width, height=height),
             num_proc=1, progress=False)
    return root


@pytest.fixture(scope="session")
def small_prepared_dataset(small_synth_world, tmp_path_factory):
    """The small world prepared with 3 frames, stride 1, 32 px: a DatasetDict folder for
    load_from_disk (columns of the team contract)."""
    from data_prep.prepare import prepare

    out = tmp_path_factory.mktemp("small_prepared") / "dataset"
    prepare(small_synth_world, out, frames=3, stride=1, image_size=32, num_proc=1)
    return out
