"""mlfreeze's runtime: the code every bundle ships and the build-time gate runs.

Device and execution-provider selection (``device``), the ``models.json`` reader and the
model loaders, preprocessing, and the verification checks with the frozen self-test
(``mlfreeze_runtime.verify``). Installed with mlfreeze and collected into every bundle by
the PyInstaller hook that mlfreeze registers (``mlfreeze.specs.hooks``), so the code that
passed verification is the code that ships. Importing it imports no ML library: torch,
open_clip, onnxruntime and insightface are imported by the functions that need them.
"""
