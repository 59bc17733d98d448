"""Face verification for the gate: detect, align, judge quality and liveness,
embed and compare a live capture with the chip photo.

The only inference engine is onnxruntime; model files are pinned by sha256 in
`models/manifest.json` and loaded from a configurable directory.
"""
