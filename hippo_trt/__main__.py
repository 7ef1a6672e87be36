import sys

from hippo_trt.cli import main

sys.exit(main())
