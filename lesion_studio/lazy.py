"""`lazy_import`: a module stand-in that imports the real module on first attribute access.

Keeps the heavy scientific stack (scipy, scikit-image, SimpleITK, OpenCV) out of the GUI's
start: `cv2 = lazy_import("cv2")` at the top of a module costs nothing until `cv2.resize` runs.
Only for modules used through attributes (`ndimage.label`, `sitk.ReadImage`), never for
`from x import y` names or for annotations evaluated at import time.
"""

from __future__ import annotations

import importlib
import types


class _LazyModule(types.ModuleType):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.__dict__["_lazy_name"] = name

    def __getattr__(self, attr: str):
        module = importlib.import_module(self.__dict__["_lazy_name"])
        self.__dict__.update(module.__dict__)  # later look-ups skip __getattr__
        return getattr(module, attr)

    def __repr__(self) -> str:
        return f"<lazy module {self.__dict__['_lazy_name']!r}>"


def lazy_import(name: str) -> types.ModuleType:
    """The module `name` if already imported, else a stand-in that imports it when first used."""
    import sys

    return sys.modules.get(name) or _LazyModule(name)
