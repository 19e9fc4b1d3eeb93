"""Private attributes known to be safe, for the Retain Safe Private Option of `deid`.

Transcribed from DICOM PS3.15 Annex E.3.10, Table E.3.10-1 "Safe Private Attributes" (the
standard's sample list; it notes that vendors do not guarantee them to be safe). No installed
package ships this table in machine-readable form (`dicom-anonymizer` holds only Table E.1-1,
pydicom's private dictionary says nothing about safety), so the rows below were copied by
hand, each with the table's VR and meaning. Deliberately a subset, small and checked rather
than complete: numeric acquisition and pixel-scaling parameters only. Left out are the
table's rows with a UID (NQHeader Analyzed Series UID: it would link back to the source),
free text (NQHeader Return Message), sequences or bulk data (Hologic codec, Siemens SC2000
acoustic data: a kept private sequence is not de-identified inside) and the NeuroQuant
volumetry rows, which a lesion-studio template does not need.

A row is `(group, private creator, element offset in the block)`: a private tag
(gggg,xxEE) matches when the creator of its block xx is exactly that private creator
(surrounding spaces ignored) and EE is the offset, wherever the block was reserved.
"""

from __future__ import annotations

from typing import NamedTuple


class SafePrivateRow(NamedTuple):
    """One row of Table E.3.10-1: the tag (gggg,xxEE) as group, creator and offset EE."""

    group: int
    creator: str
    offset: int
    vr: str
    meaning: str


#: PS3.15 Table E.3.10-1, the rows kept by lesion-studio (see the module docstring).
SAFE_PRIVATE_TABLE: tuple[SafePrivateRow, ...] = (
    SafePrivateRow(0x7053, "Philips PET Private Group", 0x00, "DS", "SUV Factor"),
    SafePrivateRow(0x7053, "Philips PET Private Group", 0x09, "DS", "Activity Concentration Factor"),
    SafePrivateRow(0x00E1, "ELSCINT1", 0x21, "DS", "DLP"),
    SafePrivateRow(0x00E1, "ELSCINT1", 0x50, "DS", "Acquisition Duration"),
    SafePrivateRow(0x01E1, "ELSCINT1", 0x26, "CS", "Phantom Type"),
    SafePrivateRow(0x01F1, "ELSCINT1", 0x01, "CS", "Acquisition Type"),
    SafePrivateRow(0x01F1, "ELSCINT1", 0x07, "DS", "Table Velocity"),
    SafePrivateRow(0x01F1, "ELSCINT1", 0x26, "DS", "Pitch"),
    SafePrivateRow(0x01F1, "ELSCINT1", 0x27, "DS", "Rotation Time"),
    SafePrivateRow(0x0019, "GEMS_ACQU_01", 0x23, "DS", "Table Speed [mm/rotation]"),
    SafePrivateRow(0x0019, "GEMS_ACQU_01", 0x24, "DS", "Mid Scan Time [sec]"),
    SafePrivateRow(0x0019, "GEMS_ACQU_01", 0x27, "DS", "Rotation Speed (Gantry Period)"),
    SafePrivateRow(0x0019, "GEMS_ACQU_01", 0x9E, "LO", "Internal Pulse Sequence Name"),
    SafePrivateRow(0x0043, "GEMS_PARM_01", 0x27, "SH", "Scan Pitch Ratio in the form \"n.nnn:1\""),
    SafePrivateRow(0x0043, "GEMS_PARM_01", 0x39, "IS", "1st value is B Value"),
    SafePrivateRow(0x0043, "GEMS_PARM_01", 0x6F, "DS", "Scanner Table Entry + Gradient Coil Selected"),
    SafePrivateRow(0x0045, "GEMS_HELIOS_01", 0x01, "SS", "Number of Macro Rows in Detector"),
    SafePrivateRow(0x0045, "GEMS_HELIOS_01", 0x02, "FL", "Macro width at ISO Center"),
    SafePrivateRow(0x0025, "GEMS_SERS_01", 0x07, "SL", "Images in Series"),
    SafePrivateRow(0x2001, "Philips Imaging DD 001", 0x03, "FL", "Diffusion B-Factor"),
    SafePrivateRow(0x2001, "Philips Imaging DD 001", 0x04, "CS", "Diffusion Direction"),
    SafePrivateRow(0x2005, "Philips MR Imaging DD 001", 0x0D, "FL", "Scale Intercept"),
    SafePrivateRow(0x2005, "Philips MR Imaging DD 001", 0x0E, "FL", "Scale Slope"),
    SafePrivateRow(0x0019, "SIEMENS MR HEADER", 0x0C, "IS", "B Value"),
    SafePrivateRow(0x0019, "SIEMENS MR HEADER", 0x0D, "CS", "Diffusion Directionality"),
    SafePrivateRow(0x0019, "SIEMENS MR HEADER", 0x0E, "FD", "Diffusion Gradient Direction"),
    SafePrivateRow(0x0019, "SIEMENS MR HEADER", 0x27, "FD", "B Matrix"),
)


def safe_private_keys() -> frozenset[tuple[int, str, int]]:
    """The table as `(group, creator, offset)` keys, the form `deid` matches private tags by."""
    return frozenset((row.group, row.creator, row.offset) for row in SAFE_PRIVATE_TABLE)
