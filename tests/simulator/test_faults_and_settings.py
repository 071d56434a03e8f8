"""Fault rules and settings, without HTTP."""

from __future__ import annotations

import msgspec
import pytest

from services.shared.settings import SettingsError
from services.simulator.config import RuntimeConfig, SimulatorSettings
from services.simulator.faults import Fault, FaultBook, FaultSpec, parse_tags


def test_tags_are_parsed_case_insensitively() -> None:
    tags = parse_tags("a cat [SIM:503X2] [sim:hangx1] [sim:fail=InternalServiceError] [sim:slow=1.5] [sim:what]")
    assert [(t.kind, t.count, t.value) for t in tags] == [
        ("503", 2, None),
        ("hang", 1, None),
        ("task_failed", None, "InternalServiceError"),
        ("slow", None, "1.5"),
    ]


def test_counted_tags_chain_by_attempt() -> None:
    book = FaultBook()
    prompt = "x [sim:429x1][sim:503x2]"
    kinds = [book.decide("gemini", "generate_content", prompt).fault for _ in range(5)]
    assert kinds == [Fault("429"), Fault("503"), Fault("503"), None, None]
    assert book.attempts() == {"gemini": {prompt: 5}}


def test_outcome_tags_only_for_their_provider() -> None:
    book = FaultBook()
    assert book.decide("ark", "create_task", "x [sim:blocked]").outcome is None
    assert book.decide("gemini", "generate_content", "x [sim:blocked]").outcome == Fault("blocked")
    assert book.decide("ark", "create_task", "x [sim:expired]").outcome == Fault("expired")


def test_tags_do_not_apply_to_task_reads() -> None:
    book = FaultBook()
    assert book.decide("ark", "get_task", "x [sim:429]").fault is None


def test_slow_tag() -> None:
    book = FaultBook()
    assert book.decide("gemini", "generate_content", "x [sim:slow=2.5]").slow_seconds == 2.5
    assert book.decide("gemini", "generate_content", "x [sim:slow=soon]").slow_seconds is None


def test_queued_faults_win_over_tags_and_run_out() -> None:
    book = FaultBook()
    book.add(FaultSpec(provider="gemini", kind="500", count=2))
    decisions = [book.decide("gemini", "generate_content", "x [sim:429]").fault for _ in range(3)]
    assert decisions == [Fault("500"), Fault("500"), Fault("429")]
    assert book.pending() == []


def test_queued_fault_filters() -> None:
    book = FaultBook()
    book.add(FaultSpec(provider="ark", kind="503", route="get_task", match="dog"))
    assert book.decide("ark", "create_task", "a dog").fault is None
    assert book.decide("ark", "get_task", "a cat").fault is None
    assert book.decide("gemini", "generate_content", "a dog").fault is None
    assert book.decide("ark", "get_task", "a dog").fault == Fault("503")


@pytest.mark.parametrize(
    "spec",
    [
        FaultSpec(provider="ark", kind="blocked"),
        FaultSpec(provider="gemini", kind="task_failed"),
        FaultSpec(provider="ark", kind="expired", route="get_task"),
        FaultSpec(provider="ark", kind="429", route="generate_content"),
    ],
)
def test_fault_specs_that_cannot_apply(spec: FaultSpec) -> None:
    with pytest.raises(ValueError, match=r"kind|route"):
        FaultBook().add(spec)


def test_settings_from_env() -> None:
    settings = SimulatorSettings.from_env(
        {
            "DEVELOPMENT_MODE": "true",
            "SIMULATOR_PORT": "9100",
            "SIMULATOR_PUBLIC_URL": "http://simulator:8002/",
            "SIMULATOR_GEMINI_API_KEY": "one, two",
            "SIMULATOR_LATENCY_MS": "20",
            "SIMULATOR_ARK_LATENCY_MS": "0",
            "SIMULATOR_ARK_RUN_SECONDS": "0.5",
            "SIMULATOR_FAULTS": '[{"provider": "ark", "kind": "429", "count": 2}]',
        }
    )
    assert settings.port == 9100
    assert settings.public_url == "http://simulator:8002"
    assert settings.api_keys["gemini"] == ("one", "two")
    assert settings.api_keys["ark"] == ("sim-ark-key",)
    assert settings.runtime.latency_for("gemini") == 0.02
    assert settings.runtime.latency_for("ark") == 0
    assert settings.runtime.as_dict()["ark_run_seconds"] == 0.5
    assert settings.runtime.as_dict()["ark_queue_seconds"] == 1.0
    assert settings.faults == (FaultSpec(provider="ark", kind="429", count=2),)
    assert "one" not in repr(settings)


def test_defaults() -> None:
    settings = SimulatorSettings.from_env({"DEVELOPMENT_MODE": "true"})
    assert (settings.host, settings.port) == ("127.0.0.1", 8002)
    assert settings.api_keys["gemini"] == ("sim-gemini-key",)
    assert settings.runtime == RuntimeConfig()
    assert settings.runtime.as_dict()["media_ttl_seconds"] == 24 * 3600


def test_the_published_keys_are_accepted_in_development_mode_only() -> None:
    with pytest.raises(SettingsError, match=r"SIMULATOR_(GEMINI|ARK)_API_KEY is a published development value"):
        SimulatorSettings.from_env({})
    strong = {"SIMULATOR_GEMINI_API_KEY": "g" * 32, "SIMULATOR_ARK_API_KEY": "a" * 32}
    assert SimulatorSettings.from_env(strong).api_keys == {"gemini": ("g" * 32,), "ark": ("a" * 32,)}


@pytest.mark.parametrize(
    "environ",
    [
        {"SIMULATOR_PORT": "http"},
        {"SIMULATOR_ARK_RUN_SECONDS": "-1"},
        {"SIMULATOR_FAULTS": '{"provider": "nobody"}'},
        {"SIMULATOR_ARK_API_KEY": " , "},
    ],
)
def test_bad_settings_name_the_problem(environ: dict[str, str]) -> None:
    with pytest.raises(SettingsError):
        SimulatorSettings.from_env({"DEVELOPMENT_MODE": "true", **environ})


def test_runtime_patch_validates() -> None:
    assert RuntimeConfig().patched({"hang_seconds": 2}).hang_seconds == 2
    with pytest.raises(msgspec.ValidationError, match="latency_ms"):
        RuntimeConfig().patched({"latency_ms": -5})
