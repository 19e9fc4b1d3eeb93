"""`python -m lesion_studio` runs the same command line as `lesion-studio`."""

import sys

from lesion_studio.app.cli import main

if __name__ == "__main__":
    sys.exit(main())
