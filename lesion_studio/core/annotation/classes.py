"""Lesion classes, lesion origins and the per-lesion metadata kept beside the label map."""

from __future__ import annotations

from dataclasses import dataclass

#: Where a lesion instance came from; kept in the table and the provenance of exports.
ORIGINS: tuple[str, ...] = ("drawn", "sampled", "synthetic", "imported")


@dataclass(frozen=True)
class LesionClass:
    """A kind of lesion with the colour it is drawn in (`color_rgb`, 0-255 each)."""

    name: str
    color_rgb: tuple[int, int, int]

    def to_json(self) -> dict:
        return {"name": self.name, "color_rgb": list(self.color_rgb)}

    @classmethod
    def from_json(cls, data: dict) -> "LesionClass":
        r, g, b = (int(v) for v in data["color_rgb"])
        return cls(name=str(data["name"]), color_rgb=(r, g, b))


#: The classes every document starts with; users add more with `AnnotationDocument.add_class`.
DEFAULT_CLASSES: tuple[LesionClass, ...] = (
    LesionClass("nodule", (255, 200, 0)),
    LesionClass("stone", (0, 200, 255)),
    LesionClass("mass", (255, 90, 90)),
    LesionClass("hemorrhage", (190, 0, 60)),
    LesionClass("custom", (120, 255, 120)),
)


@dataclass(frozen=True)
class LesionMeta:
    """What a lesion is (`class_name`), where it came from (`origin`, one of `ORIGINS`) and,
    for synthetic lesions, the provenance record (request, plan, model and its hash)."""

    class_name: str
    origin: str = "drawn"
    provenance: dict | None = None

    def __post_init__(self) -> None:
        if self.origin not in ORIGINS:
            raise ValueError(f"origin must be one of {ORIGINS}, got {self.origin!r}")

    def to_json(self) -> dict:
        data = {"class_name": self.class_name, "origin": self.origin}
        if self.provenance is not None:
            data["provenance"] = self.provenance
        return data

    @classmethod
    def from_json(cls, data: dict) -> "LesionMeta":
        provenance = data.get("provenance")
        return cls(
            class_name=str(data["class_name"]),
            origin=str(data["origin"]),
            provenance=provenance if isinstance(provenance, dict) else None,
        )
