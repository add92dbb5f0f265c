"""Reading /metrics in tests: parsed samples looked up by name and labels, and promtool's check."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families


class Scrape:
    """The samples of one /metrics text, looked up by name and labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.types: dict[str, str] = {}
        self.samples: dict[str, dict[frozenset, float]] = {}
        for fam in text_string_to_metric_families(text):
            self.types[fam.name] = fam.type
            for s in fam.samples:
                self.samples.setdefault(s.name, {})[frozenset(s.labels.items())] = s.value

    def __call__(self, name: str, **labels: str) -> float:
        return self.samples[name][frozenset(labels.items())]

    def series(self, name: str) -> dict[frozenset, float]:
        return self.samples.get(name, {})

    def by(self, name: str, label: str) -> dict[str, float]:
        return {dict(k)[label]: v for k, v in self.series(name).items()}


def promtool_check(text: str) -> None:
    """`promtool check metrics` must accept the text; without promtool: skip, but fail in CI."""
    exe = shutil.which("promtool")
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is required in CI (Debian package 'prometheus'; .ci/run installs it)",
                        pytrace=False)
        pytest.skip("promtool not installed (apt-get install prometheus)")
    proc = subprocess.run([exe, "check", "metrics"], input=text, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, f"promtool check metrics: {proc.stdout}{proc.stderr}"
