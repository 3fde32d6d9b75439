"""``python -m fcn_tf.bench``."""

import sys

from fcn_tf.bench.cli import main

sys.exit(main())
