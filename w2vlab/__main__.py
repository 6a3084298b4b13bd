import sys

from w2vlab.cli import main

sys.exit(main())
