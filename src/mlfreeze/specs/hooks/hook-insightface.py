# insightface has no contrib hook. Collect its inference code and data (meanshape pickle,
# sample images such as t1.jpg used by the self-test's face probe); leave out the Qt GUI and
# the CLI commands, which a bundled app never runs.
from PyInstaller.utils.hooks import collect_data_files, collect_submodules


def _wanted(name: str) -> bool:
    return not name.startswith(("insightface.gui", "insightface.commands"))


hiddenimports = collect_submodules("insightface", filter=_wanted)
datas = collect_data_files("insightface", excludes=["gui/**", "commands/**", "**/*.pyx", "**/*.c"])
excludedimports = ["insightface.gui", "insightface.commands"]
