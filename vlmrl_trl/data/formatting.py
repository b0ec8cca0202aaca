"""Turn clip datasets into what TRL's trainers read: SFT prompt/completion pairs and RL prompts, with images.

Both keep the ``images`` column (the clip's frames, decoded lazily) and write a conversational prompt with
one ``{"type": "image"}`` placeholder per frame, which TRL fills with the images
(``trl.data_utils.prepare_multimodal_messages``) before the processor's chat template renders them.
Prompt modes:

* ``instruction``: the frames, then a short instruction naming the JSON fields and the label set's ids;
* ``frames_only``: the frames and no text at all (the method's Stage 1: describe the video unprompted).

With ``clip_input="video"`` the frames go as one video instead (the model's video path, where it has one): one
``{"type": "video"}`` placeholder, the frames in a ``video`` column and their rate in ``fps``
(``vlmrl_trl.trainers.clip_video``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, get_args

from ..labels import BDDOIA, LabelSet
from ..schema import render_decision
from .frames import DEFAULT_FPS, check_fps

if TYPE_CHECKING:
    import datasets

PromptMode = Literal["instruction", "frames_only"]
SFTTarget = Literal["decision", "scene"]
PROMPT_MODES: tuple[str, ...] = get_args(PromptMode)
ClipInput = Literal["images", "video"]
CLIP_INPUTS: tuple[str, ...] = get_args(ClipInput)
_OPENING = {
    "images": "The images are consecutive dashcam frames, oldest first.",
    "video": "The video is a dashcam clip.",
}


def check_clip_input(clip_input: str) -> None:
    """Reject a `clip_input` other than ``images`` or ``video``, naming the option."""
    if clip_input not in CLIP_INPUTS:
        raise ValueError(f"clip_input must be one of {CLIP_INPUTS}, got {clip_input!r}")


def instruction(labels: LabelSet = BDDOIA, clip_input: ClipInput = "images") -> str:
    """The task text of ``instruction`` prompts, naming the ids of ``labels``."""
    check_clip_input(clip_input)
    return f"{_OPENING[clip_input]} Describe the scene and decide what the car may do. " + labels.describe_format()


INSTRUCTION = instruction(BDDOIA)


def check_prompt_mode(prompt_mode: str) -> None:
    """Reject a `prompt_mode` other than ``instruction`` or ``frames_only``, naming the option."""
    if prompt_mode not in PROMPT_MODES:
        raise ValueError(f"prompt_mode must be one of {PROMPT_MODES}, got {prompt_mode!r}")


def build_prompt(
    num_frames: int,
    prompt_mode: PromptMode = "instruction",
    labels: LabelSet = BDDOIA,
    clip_input: ClipInput = "images",
) -> list[dict[str, Any]]:
    """The user turn for a clip of ``num_frames`` frames: image placeholders (or one video placeholder), then the
    instruction if any."""
    check_prompt_mode(prompt_mode)
    check_clip_input(clip_input)
    if num_frames < 1:
        raise ValueError(f"a clip needs at least one frame, got num_frames={num_frames}")
    if clip_input == "video":
        content: list[dict[str, Any]] = [{"type": "video"}]
    else:
        content = [{"type": "image"} for _ in range(num_frames)]
    if prompt_mode == "instruction":
        content.append({"type": "text", "text": instruction(labels, clip_input)})
    return [{"role": "user", "content": content}]


def sft_target(
    actions: list[int],
    reasons: list[int],
    scene: str | None,
    target: SFTTarget = "decision",
    labels: LabelSet = BDDOIA,
) -> str:
    """The text the model learns to write: the decision JSON (scene included) or the scene description alone."""
    if target == "scene":
        if not scene:
            raise ValueError("target='scene' needs a scene description for every clip")
        return scene
    if target != "decision":
        raise ValueError(f"target must be 'decision' or 'scene', got {target!r}")
    return render_decision(actions, reasons, scene or "", labels)


def _require(ds: datasets.Dataset, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in ds.column_names]
    if missing:
        raise ValueError(f"the dataset lacks columns {missing}; expected clips from vlmrl_trl.data.load_clips")


def as_video(ds: datasets.Dataset, fps: float = DEFAULT_FPS) -> datasets.Dataset:
    """Clips whose frames (``images``) become one video a row: the ``video`` column, with the frame rate in ``fps``
    (frames stay lazily decoded)."""
    check_fps(fps, "clip_fps")
    ds = ds.rename_column("images", "video")
    return ds.add_column("fps", [float(fps)] * len(ds))


def to_sft_dataset(
    ds: datasets.Dataset,
    prompt_mode: PromptMode = "instruction",
    *,
    target: SFTTarget = "decision",
    labels: LabelSet = BDDOIA,
    clip_input: ClipInput = "images",
    fps: float = DEFAULT_FPS,
) -> datasets.Dataset:
    """Conversational prompt/completion rows for ``trl.SFTTrainer``: columns ``prompt``, ``completion``,
    ``images``, ``clip_id``. The completion is ``render_decision`` of the labels with the clip's description as
    ``scene`` (empty when the data set has none), or the description alone with ``target="scene"``. With
    ``clip_input="video"``, ``video`` and ``fps`` replace ``images`` (see `as_video`)."""
    check_prompt_mode(prompt_mode)
    check_clip_input(clip_input)
    _require(ds, ("clip_id", "images", "num_frames", "actions", "reasons", "scene"))

    def convert(num_frames: int, actions: list[int], reasons: list[int], scene: str | None) -> dict[str, Any]:
        text = sft_target(actions, reasons, scene, target, labels)
        return {
            "prompt": build_prompt(num_frames, prompt_mode, labels, clip_input),
            "completion": [{"role": "assistant", "content": [{"type": "text", "text": text}]}],
        }

    keep = {"prompt", "completion", "images", "clip_id"}
    rows = ds.map(
        convert,
        input_columns=["num_frames", "actions", "reasons", "scene"],
        remove_columns=[c for c in ds.column_names if c not in keep],
        desc="SFT examples",
    )
    return as_video(rows, fps) if clip_input == "video" else rows


def to_rl_dataset(
    ds: datasets.Dataset,
    prompt_mode: PromptMode = "instruction",
    *,
    labels: LabelSet = BDDOIA,
    clip_input: ClipInput = "images",
    fps: float = DEFAULT_FPS,
) -> datasets.Dataset:
    """Prompt-only rows for ``trl.GRPOTrainer`` (or PPO): ``prompt``, ``images`` and the columns reward
    functions read (``actions``, ``reasons``, ``scene``, ``clip_id``, ``num_frames``). With ``clip_input="video"``,
    ``video`` and ``fps`` replace ``images`` (`VLMGRPOTrainer` reads them; stock TRL takes no video)."""
    check_prompt_mode(prompt_mode)
    check_clip_input(clip_input)
    _require(ds, ("clip_id", "images", "num_frames", "actions", "reasons", "scene"))
    keep = {"prompt", "images", "actions", "reasons", "scene", "clip_id", "num_frames"}
    rows = ds.map(
        lambda n: {"prompt": build_prompt(n, prompt_mode, labels, clip_input)},
        input_columns=["num_frames"],
        remove_columns=[c for c in ds.column_names if c not in keep],
        desc="RL prompts",
    )
    return as_video(rows, fps) if clip_input == "video" else rows
