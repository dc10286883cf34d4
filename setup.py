"""Package discovery that pyproject.toml cannot express.

Entry points live in cmd/<binary>/ (binary names have dashes), so each
directory is mapped to an importable package kubelite_cmd.<name>, where
<name> is the binary without its "kubelite-" prefix, dashes as underscores.
Everything else is declared in pyproject.toml.
"""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
cmds = {
    "kubelite_cmd." + d.name.removeprefix("kubelite-").replace("-", "_"): f"cmd/{d.name}"
    for d in sorted((HERE / "cmd").iterdir())
    if d.is_dir() and (d / "main.py").exists()
}
setup(
    package_dir={"": "pkg", **cmds},
    packages=find_packages("pkg") + list(cmds),
)
