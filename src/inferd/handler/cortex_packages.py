"""What Cortex v0.10's images pre-installed, named when a user file's import of it fails here.

Cortex's docs list the packages its images held "and can be used in your implementations"
(``docs/deployments/predictor.md``, ``docs/deployments/request-handlers.md``), so its projects
imported them without a ``requirements.txt`` line. inferd installs some of them with itself or
its ``cortex`` extra and leaves the rest (torch, tensorflow-hub, ...) to ``requirements.txt``;
a bare ``No module named 'tensorflow_hub'`` did not say which, nor that it was ever there.
"""

from __future__ import annotations

import importlib.util

PREDICTOR_IMAGE = "Cortex v0.10's predictor image"
API_IMAGES = "Cortex v0.10's TensorFlow and ONNX images"

# module name -> (distribution as pinned in Cortex's docs, the image, inferd's extra holding it)
PRE_INSTALLED: dict[str, tuple[str, str, str | None]] = {
    "keras": ("Keras==2.3.1", PREDICTOR_IMAGE, "cortex"),
    "PIL": ("Pillow==6.2.1", PREDICTOR_IMAGE, "cortex"),
    "cloudpickle": ("cloudpickle==1.2.2", PREDICTOR_IMAGE, None),
    "dill": ("dill==0.3.1.1", PREDICTOR_IMAGE, None),
    "flask_api": ("flask-api==1.1", PREDICTOR_IMAGE, None),
    "flask": ("flask==1.1.1", PREDICTOR_IMAGE, None),
    "joblib": ("joblib==0.14.0", PREDICTOR_IMAGE, "cortex"),
    "nltk": ("nltk==3.4.5", PREDICTOR_IMAGE, "cortex"),
    "np_utils": ("np-utils==0.5.11.1", PREDICTOR_IMAGE, None),
    "pandas": ("pandas==0.25.3", PREDICTOR_IMAGE, "cortex"),
    "torch": ("torch==1.3.0", PREDICTOR_IMAGE, None),
    "skimage": ("scikit-image==0.16.2", PREDICTOR_IMAGE, "cortex"),
    "sklearn": ("scikit-learn==0.21.3", PREDICTOR_IMAGE, "cortex"),
    "scipy": ("scipy==1.3.1", PREDICTOR_IMAGE, "cortex"),
    "six": ("six==1.12.0", PREDICTOR_IMAGE, None),
    "statsmodels": ("statsmodels==0.10.1", PREDICTOR_IMAGE, "cortex"),
    "sympy": ("sympy==1.4", PREDICTOR_IMAGE, "cortex"),
    "tensor2tensor": ("tensor2tensor==1.14.1", PREDICTOR_IMAGE, None),
    "tensorflow_hub": ("tensorflow-hub==0.7.0", PREDICTOR_IMAGE, None),
    "tensorflow": ("tensorflow==2.0.0", PREDICTOR_IMAGE, "tensorflow"),
    "torchvision": ("torchvision==0.4.1", PREDICTOR_IMAGE, None),
    "waitress": ("waitress==1.3.1", PREDICTOR_IMAGE, None),
    "xgboost": ("xgboost==0.90", PREDICTOR_IMAGE, "cortex"),
    "onnxruntime": ("onnxruntime==0.5.0", API_IMAGES, "onnx"),
}


def missing_package_hint(exc: BaseException) -> str:
    """`` (Cortex v0.10's predictor image pre-installed ...; ...)`` for a failed import of a
    package Cortex's images held that is not installed here; else empty."""
    name = getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None
    if not name:
        return ""
    top = name.split(".")[0]
    known = PRE_INSTALLED.get(top)
    if known is None or importlib.util.find_spec(top) is not None:
        return ""  # a submodule gone from a newer release is another story
    pinned, image, extra = known
    package = pinned.split("==")[0]
    where = (
        f"pip install 'inferd[{extra}]' installs it, or add it to requirements.txt"
        if extra
        else ("add it to requirements.txt")
    )
    return f" ({image} pre-installed {pinned}; inferd does not: {where}, e.g. `{package}`)"
