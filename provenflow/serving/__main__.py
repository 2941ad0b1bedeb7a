"""``python -m provenflow.serving --bundle /model --port 8080``: the container image's command."""

import sys

from provenflow.serving.run import main

sys.exit(main())
