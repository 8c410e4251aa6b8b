# Runtime hook (every bundle): a windowed app ([tool.mlfreeze] console = false) starts without
# stdout/stderr (None), so print(), logging to stderr and tqdm would raise. Each missing stream
# becomes the app's log file, <data dir>/logs/<app>.log (mlfreeze_runtime.stdio; the data dir is
# $MLFREEZE_DATA_DIR or the platform's user data directory for the app). A stream that exists is
# left alone.
import sys

if sys.stdout is None or sys.stderr is None:
    from mlfreeze_runtime.stdio import redirect_missing_streams

    redirect_missing_streams()
