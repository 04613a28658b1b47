"""The README documents exactly the settings the server reads."""
import re
from pathlib import Path

from jwt_server.config import SETTINGS

README = Path(__file__).resolve().parent.parent / "README.md"


def configuration_table_variables():
    section = README.read_text().split("\n## Configuration", 1)[1].split("\n## ", 1)[0]
    names = []
    for line in section.splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            names += re.findall(r"`([A-Z][A-Z0-9_]+)`", first_cell)
    return names


def test_readme_configuration_table_names_exactly_the_settings():
    assert sorted(configuration_table_variables()) == sorted(setting.name for setting in SETTINGS)
