"""mlfreeze's runtime: the code every bundle ships and the build-time gate runs.

``device`` (torch device, onnxruntime providers and their device ids), ``modelindex`` (the one
``models.json`` reader/writer, schema docs/models-index.schema.json), ``clip`` and ``faces`` (the
one loader each for open_clip and insightface, with the preprocessing and detector settings from
models.json), ``app`` (the app contract: ``--health`` and the self-test's ``--mlfreeze-probe``),
and the verification checks with the frozen self-test (``mlfreeze_runtime.verify``, left out of
the lite bundle). Installed with mlfreeze and collected into every bundle by the PyInstaller hook
that mlfreeze registers (``mlfreeze.specs.hooks``), so the code that passed verification is the
code that ships. Importing it imports no ML library: torch, open_clip, onnxruntime and insightface
are imported by the functions that need them.
"""
