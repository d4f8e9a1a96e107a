"""CaptureConfig: the input and decoding options, resolved per model, and what they ask for."""

from __future__ import annotations

import pytest

from capture.config import CaptureConfig
from capture.data.sample import InputRequest
from capture.errors import CaptureError
from capture.generation import GenerationSettings


def test_frames_default_to_the_models_and_are_recorded_resolved() -> None:
    assert CaptureConfig().frames is None  # "the model's default"
    eventgpt = CaptureConfig(model="eventgpt").for_model("events", 5)
    llava = CaptureConfig(model="llava-1.5").for_model("image", 1)
    video = CaptureConfig(model="video-llava").for_model("video", 8)
    assert (eventgpt.frames, llava.frames, video.frames) == (5, 1, 8)
    assert (eventgpt.image_source, llava.image_source, video.image_source) == (None, "video", "video")
    assert eventgpt.to_json()["frames"] == 5
    assert CaptureConfig(frames=3).for_model("video", 8).frames == 3
    # resolving again (as --resume does) changes nothing
    assert eventgpt.for_model("events", 5) == eventgpt and llava.for_model("image", 1) == llava


def test_input_requests() -> None:
    eventgpt = CaptureConfig(model="eventgpt", frames=1, event_input="image", prompt=" Why? ").for_model(
        "events", 5
    )
    assert eventgpt.input_request("events", "linspace") == InputRequest(
        "events", 1, "linspace", "image", None, "Why?"
    )
    drawn = CaptureConfig(sensor_size="640x480").for_model("events", 5).input_request("events", "linspace")
    assert drawn.sensor_hw == (480, 640) and drawn.n_frames == 5
    llava = CaptureConfig(image_source="event").for_model("image", 1).input_request("image", "linspace")
    assert (llava.source, llava.n_frames) == ("events", 1)
    video = CaptureConfig().for_model("video", 8).input_request("video", "arange")
    assert (video.source, video.n_frames, video.pick) == ("camera", 8, "arange")


def test_generation_settings() -> None:
    greedy = CaptureConfig(max_new_tokens=7, repetition_penalty=1.1).generation()
    assert greedy == GenerationSettings(7, 0, repetition_penalty=1.1)
    assert greedy.generate_kwargs() == {
        "disable_compile": True,  # only --compile compiles, never transformers on its own
        "max_new_tokens": 7,
        "min_new_tokens": 0,
        "do_sample": False,
        "num_beams": 1,
        "temperature": None,
        "top_p": None,
        "top_k": None,
        "repetition_penalty": 1.1,
    }
    assert greedy.seed_for(3, 4) is None and greedy.describe(3).seeding is None
    # EventGPT's official inference: sampling, T 0.6, top-p 1, 512 new tokens (top-k: transformers' 50)
    sampled = CaptureConfig(do_sample=True, temperature=0.6, top_p=1.0, max_new_tokens=512).generation()
    kwargs = sampled.generate_kwargs()
    assert (kwargs["do_sample"], kwargs["temperature"], kwargs["top_p"], kwargs["top_k"]) == (
        True,
        0.6,
        1.0,
        50,
    )
    assert "repetition_penalty" not in kwargs
    assert sampled.seed_for(3, 4) == 7
    info = sampled.describe(3)
    assert info.do_sample and info.max_new_tokens == 512 and "manual_seed(3 + sample index)" in info.seeding
    defaults = CaptureConfig(do_sample=True).generation()
    assert (defaults.temperature, defaults.top_p, defaults.top_k) == (1.0, 1.0, 50)


@pytest.mark.parametrize(
    ("options", "modality", "message"),
    [
        ({"image_source": "event"}, "events", "--image-source event applies to llava-1.5 and video-llava"),
        ({"event_input": "npy"}, "image", "--event-input npy applies to event frames"),
        ({"sensor_size": "64x48"}, "video", "--sensor-size applies where events are drawn"),
    ],
)
def test_options_a_model_cannot_use(options: dict, modality: str, message: str) -> None:
    with pytest.raises(CaptureError, match=message):
        CaptureConfig(**options).for_model(modality, 1)  # type: ignore[arg-type]
    # with event frames, llava-1.5 takes --event-input and --sensor-size
    CaptureConfig(image_source="event", event_input="npy", sensor_size="64x48").for_model("image", 1)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"frames": 0}, "--frames 0"),
        ({"frames": 65}, "--frames 65"),
        ({"sensor_size": "0x5"}, "--sensor-size 0x5"),
        ({"sensor_size": "axb"}, "--sensor-size axb"),
        ({"temperature": 0.5}, "needs --do-sample"),
        ({"do_sample": True, "top_p": 0.0}, "--top-p 0.0"),
        ({"prompt": ""}, "--prompt is empty"),
        ({"event_input": "image", "sensor_size": "64x48"}, "not to --event-input image"),
    ],
)
def test_invalid_values_name_the_flag(options: dict, message: str) -> None:
    with pytest.raises(CaptureError, match=message):
        CaptureConfig(**options)


def test_run_json_round_trip_checks_the_new_fields() -> None:
    cfg = CaptureConfig(do_sample=True, temperature=0.6, frames=1, event_input="image").for_model("events", 5)
    assert CaptureConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(CaptureError, match=r"config\.event_input"):
        CaptureConfig.from_json({**cfg.to_json(), "event_input": "jpeg"})
    with pytest.raises(CaptureError, match="needs --do-sample"):
        CaptureConfig.from_json({**cfg.to_json(), "do_sample": False})
