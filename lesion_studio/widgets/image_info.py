"""A read-only summary of the open image: size, spacing, modality, window source, notes."""

from __future__ import annotations

from PySide6.QtWidgets import QGroupBox, QLabel, QVBoxLayout, QWidget

from lesion_studio.core.image import MedicalImage


def describe_image(image: MedicalImage) -> str:
    """Human-readable lines about an image, shared by the panel and tooltips."""
    # Width × height (columns × rows), the order of the (x, y) boxes and centroids elsewhere.
    rows, cols = image.shape[-2], image.shape[-1]
    size = f"{cols} × {rows} px (W × H)"
    if image.is_volume:
        size += f", {image.shape[0]} slices"
    if image.spacing_mm is None:
        spacing = "unknown — sizes are in pixels"
    else:
        row_mm, col_mm = image.spacing_mm[-2], image.spacing_mm[-1]
        spacing = f"{col_mm:.4g} × {row_mm:.4g} mm (W × H)"
        if image.is_volume:
            spacing += f", slices {image.spacing_mm[0]:.4g} mm"
    lines = [
        f"<b>{image.source.path.name}</b>",
        f"Modality: {image.modality}",
        f"Size: {size}",
        f"Spacing: {spacing}",
        f"Window from: {image.window_source}",
    ]
    if image.source.transfer_syntax:
        lines.append(f"Transfer syntax: {image.source.transfer_syntax}")
    lines += [f"<i>{note}</i>" for note in image.source.notes]
    return "<br>".join(lines)


class ImageInfoPanel(QGroupBox):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Image", parent)
        self.label = QLabel("No image")
        self.label.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.label)

    def show_image(self, image: MedicalImage | None) -> None:
        self.label.setText("No image" if image is None else describe_image(image))
