import sys

from ogdash.cli import main

sys.exit(main())
