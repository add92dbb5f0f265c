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


def test_seed_keys_that_the_calendar_replaced_accept_only_their_defaults(tmp_path: Path) -> None:
    """The seed's market hours and update frequency would silently do nothing: their defaults load
    (old configs keep working), any other value is refused, naming the key and what decides now."""
    import pytest

    from live_runner.core.config import ConfigError

    path = tmp_path / "seed.yaml"
    path.write_text('market_open_time: "09:30"\nmarket_close_time: "16:00"\nupdate_frequency_ms: 1000\n')
    assert load_config(path) == SystemConfig()
    for line, words in (('market_open_time: "10:00"', "calendar decides each session's open"),
                        ('market_close_time: "13:00"', "calendar decides each session's close"),
                        ("update_frequency_ms: 250", "acts on every bar as it arrives")):
        path.write_text(line + "\n")
        with pytest.raises(ConfigError) as err:
            load_config(path)
        key = line.split(":")[0]
        assert f": {key}:" in str(err.value)
        assert words in str(err.value) and "remove the key" in str(err.value)
