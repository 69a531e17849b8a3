"""Backends behind one protocol (base.py): numpy_ref, onnx (onnxruntime), tvm; each registers itself."""
