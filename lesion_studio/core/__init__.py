"""Qt-free domain logic: image IO, masks, lesion geometry, synthesis plans, metrics."""
