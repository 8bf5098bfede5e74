import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.config import Config, load_config  # noqa: E402
from core.generator import generate_folder  # noqa: E402


@pytest.fixture(scope="session")
def cfg() -> Config:
    return load_config()


@pytest.fixture(scope="session")
def captcha_dir(tmp_path_factory, cfg) -> Path:
    """A small folder of generated captchas, shared by the tests that only read it."""
    folder = tmp_path_factory.mktemp("captchas")
    generate_folder(folder, 48, seed=11, labels=cfg.labels, image=cfg.image, workers=1)
    return folder
