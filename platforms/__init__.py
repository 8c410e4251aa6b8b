"""Platform profiles (``platforms/*.toml``) and the runtime device layer (``device.py``).

``platforms.device`` is frozen into every full bundle and imports nothing from the
builder; the profile loader lives in ``platforms.profiles``.
"""
