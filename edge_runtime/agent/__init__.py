"""The device agent: joins a coordinator, trains the slices it is given (on local/torch_model.py or the
ONNX Runtime backend), uploads compact updates."""
