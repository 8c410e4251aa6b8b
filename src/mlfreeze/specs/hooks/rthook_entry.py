# Runtime hook (the last one, full and slim bundles): `<app>-selftest` is a small launcher that
# runs `<app>` with MLFREEZE_ENTRY=selftest (src/mlfreeze/specs/selftest_entry.py); here, inside the app's own
# executable and PYZ, that runs the bundled self-test instead of the app's script. The variable is
# removed first, so the app the self-test then probes runs as the app. Any other value is refused.
import os
import sys

_entry = os.environ.pop("MLFREEZE_ENTRY", None)
if _entry == "selftest":
    from mlfreeze_runtime.verify.selftest import main as _selftest_main

    raise SystemExit(_selftest_main())
if _entry is not None:
    print(f"{os.path.basename(sys.argv[0])}: error: MLFREEZE_ENTRY={_entry!r} is not an entry "
          "of this bundle (only 'selftest', set by <app>-selftest)", file=sys.stderr)
    raise SystemExit(2)
del _entry
