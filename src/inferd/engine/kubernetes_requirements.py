"""The export's image installs a project's requirements.txt as ``inferd deploy`` does.

Each pin is checked against inferd's own packages (``engine/requirement_plan.py``): one that inferd
already has in a version that fits is not installed again, one that does not fit is left out
with a warning (user code imports inferd's version anyway), and one that cannot install on this
Python stops the build with the nearest installable version, or is relaxed to it with the
deployment's ``relax_pins``. A plain ``pip install -r`` replaced inferd's own packages with
Cortex's 2019 pins, or failed the build. The packages go into the cache the pods' ``inferd
serve`` reads under ``INFERD_HOME``, so no pod runs pip at its start.
"""

from __future__ import annotations

PROJECT_IN_IMAGE = "/app/project"  # as engine/kubernetes.py
HOME_IN_POD = "/tmp/inferd"  # the pods' INFERD_HOME


def requirements_step(relax: bool) -> list[str]:
    """The Dockerfile lines that install ``requirements.txt``, if the project has one."""
    requirements = f"{PROJECT_IN_IMAGE}/requirements.txt"
    install = (
        "import pathlib; from inferd.engine.packages import ensure_packages; "
        f"ensure_packages(pathlib.Path('{HOME_IN_POD}'), pathlib.Path('{requirements}'), "
        f"relax={relax}, warn=print)"
    )
    return [
        "# requirements.txt as `inferd deploy` installs it, into the pods' INFERD_HOME",
        f'RUN if [ -f {requirements} ]; then python -c "{install}"; fi',
    ]
