# Runtime hook (every bundle, first of mlfreeze's): multiprocessing.freeze_support() before the app's
# script runs, so a `spawn` or `forkserver` child (and the resource tracker) of a frozen app runs its
# work and exits instead of re-running the app with flags its argparse refuses. PyInstaller's own
# multiprocessing runtime hook, which teaches freeze_support() those children on every OS, runs just
# before this one (the freeze puts it there: PyInstaller runs custom hooks before its own).
# mlfreeze_runtime.processes explains how the child finds the entry script's functions.
from mlfreeze_runtime.processes import freeze_support

freeze_support()
