"""``python -m fcn_tf.data verify CONFIG`` and ``python -m fcn_tf.data bench ...``."""

import sys

from fcn_tf.data.bench import main as bench_main
from fcn_tf.data.verify import main as verify_main
from fcn_tf.utils.names import unknown_name_message

USAGE = """usage: python -m fcn_tf.data {verify,bench} ...

  verify CONFIG          check a dataset and print its report
  bench [--data CONFIG_OR_PATH] ...   measure pipeline throughput (images/s)
"""


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    if command == "verify":
        run = verify_main
    elif command == "bench":
        run = bench_main
    else:
        print(unknown_name_message("command", command, ["verify", "bench"]), file=sys.stderr)
        return 2
    return run(rest)


if __name__ == "__main__":
    sys.exit(main())
