"""The build copies the top-level manifest.json (the source of truth) into the package, so a
wheel or any non-editable install carries it; a checkout reads it where it is."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithManifest(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "musicgen_cli" / "manifest.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(__file__).resolve().parent / "manifest.json", target)


setup(cmdclass={"build_py": BuildWithManifest})
