"""config/example.yaml is the reference: it parses, and it lists every key with its default."""

from pathlib import Path

import yaml

from live_runner.core.config import SystemConfig, load_config

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "example.yaml"


def _missing(example: dict, defaults: dict, path: str = "") -> list[str]:
    out = []
    for key, value in defaults.items():
        if key not in example:
            out.append(path + key)
        elif isinstance(value, dict) and isinstance(example[key], dict) and key != "custom":
            out += _missing(example[key], value, f"{path}{key}.")
    return out


def test_example_lists_every_key_with_its_default() -> None:
    assert load_config(EXAMPLE) == SystemConfig()
    assert _missing(yaml.safe_load(EXAMPLE.read_text()), SystemConfig().model_dump(mode="json")) == []
