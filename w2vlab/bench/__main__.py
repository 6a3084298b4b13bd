import sys

from w2vlab.bench._harness import main

sys.exit(main())
