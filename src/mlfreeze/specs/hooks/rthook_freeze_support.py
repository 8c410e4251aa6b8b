# Runtime hook (every bundle, first): multiprocessing.freeze_support(). A frozen app that starts a
# `spawn` or `forkserver` child (the default start methods on macOS and Windows; a torch DataLoader
# with workers) runs its own executable again: the spawn child with `--multiprocessing-fork ...`,
# the forkserver and resource tracker with `-c "from multiprocessing... import main"`. PyInstaller's
# own multiprocessing runtime hook (run before this one) teaches freeze_support() to recognise all
# three on every OS; calling it here, before the app's script parses sys.argv, runs the child's work
# and exits. In the app itself it returns at once.
import multiprocessing

multiprocessing.freeze_support()
