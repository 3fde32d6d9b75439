"""``python -m fcn_tf.train CONFIG [--set section.key=value ...] [--fresh]``.

Trains the model described by a commented-JSON config. Running the same
command again after an interruption resumes the run; a finished run is never
overwritten (a new run folder ``NAME-2``, ``NAME-3`` ... is made), and an
existing folder that is not a run folder is never written into. Progress
bars are drawn on a terminal; written to a file or pipe, the output is one
line per epoch.
"""

import argparse
import errno
import re
import sys

import tensorflow as tf

from fcn_tf.config import ConfigError
from fcn_tf.config.run_config import load_config
from fcn_tf.data import DatasetError
from fcn_tf.runs import RunFolderLocked
from fcn_tf.training.callbacks import TrainingDiverged
from fcn_tf.training.trainer import RunEndFailed, train
from fcn_tf.utils.cli import progress_verbosity, report_error


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fcn_tf.train", description=__doc__.split("\n\n")[1])
    parser.add_argument("config", help="config file (JSON with //, # and /* */ comments)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set train.epochs=3")
    parser.add_argument("--fresh", action="store_true",
                        help="start a new run folder even if an unfinished run exists")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress output (default: progress bars on a terminal, one "
                             "line per epoch when the output goes to a file or pipe)")
    args = parser.parse_args(argv)

    try:
        config = load_config(args.config, args.overrides)
        result = train(config, fresh=args.fresh, verbose=progress_verbosity(args.quiet))
    except (ConfigError, DatasetError, TrainingDiverged, RunFolderLocked, RunEndFailed,
            FileNotFoundError, ValueError) as error:
        return report_error(error, {"fresh": "--fresh"})
    except tf.errors.InvalidArgumentError as error:
        # A data check inside the input pipeline (mask values, image and mask sizes).
        found = re.search(r"assertion failed: (.*)", error.message)
        if not found:
            raise
        return report_error(ValueError(
            f"a data file failed a check during training: {found.group(1).strip()} Run "
            "`python -m fcn_tf.data verify CONFIG` for every problem; the same command "
            "resumes the run once the data is fixed."))
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            return report_error(OSError(
                f"could not write {error.filename or 'a run file'}: {error.strerror} (disk full or "
                "file size limit). Free space or set output.dir to another disk, then run the "
                "same command again to resume from the last complete checkpoint."))
        return report_error(error)
    best = "n/a" if result.best_metric is None else f"{result.best_metric:.4f}"
    print(f"Run folder: {result.run_dir}\nBest {'val ' if config.train.validation_split else ''}"
          f"mean IoU: {best} after {result.epochs_completed} epochs ({result.seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
