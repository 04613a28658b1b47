"""The npm packages the end-to-end tests run (socket.io-client), installed from their lock files."""
import subprocess

import pytest

NPM_TIMEOUT = 300


def npm_ci(directory):
    """``npm ci`` in ``directory`` when its node_modules is missing: exactly the locked versions."""
    if (directory / "node_modules").is_dir():
        return
    installed = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund"], cwd=directory, capture_output=True, text=True, timeout=NPM_TIMEOUT
    )
    if installed.returncode != 0:
        pytest.fail(f"npm ci in {directory} failed:\n{installed.stderr}")
