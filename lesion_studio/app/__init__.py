"""Main window, controllers, job manager and command line."""
