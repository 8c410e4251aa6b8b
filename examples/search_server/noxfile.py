"""Build sessions from mlfreeze's profiles: `nox -l` lists them; `nox -s build-linux-cuda -- --set demo`
builds, verifies, freezes and self-tests this app."""

import nox  # noqa: F401  (nox reads the sessions registered below)

from mlfreeze.sessions import make_sessions

# where the build sessions install mlfreeze from: this example lives inside the mlfreeze checkout
make_sessions(globals(), mlfreeze="../..")
