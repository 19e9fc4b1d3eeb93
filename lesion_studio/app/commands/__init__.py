"""Headless subcommands (`lesion-studio NAME ...`). Each module exposes `main(argv) -> int`
and must not import Qt, so that servers without a display can run them."""
