"""Lesion geometry (SPEC §1): crops, size modulation, non-lesion masks, generator inputs."""
