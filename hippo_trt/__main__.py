import sys

from hippo_trt.cli.main import main

sys.exit(main())
