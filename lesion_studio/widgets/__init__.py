"""Qt widgets: they render core objects and forward user intent to controllers."""
