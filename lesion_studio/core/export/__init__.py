"""Batch export (Qt-free): config, one synthetic item, and a writer per output format.

`config` parses and validates the TOML; `item.ExportItem` is one synthetic image with its
mask, geometry and provenance; `png`, `nifti`, `nnunet`, `coco`, `dicom_derived` write it;
`manifest` records provenance. Every file goes through `atomic` (temporary name, then
rename), so a killed export leaves whole files or none. The runner that calls the models is
`lesion_studio.models.batch_export`.
"""
