import sys

from clip_onnx.cli import main

sys.exit(main())
