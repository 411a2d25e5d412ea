"""Local work on a model held in memory, shared by everything that trains or evaluates one: the
device agent, the coordinator's own copy of the model, the fleet's emulated devices and the
single-device trainer.

torch_model.py is the PyTorch model a coordinator and its devices agree on (an `AdapterSpec`) with a
task's local training, statistics, evaluation and export; work.py runs a task's seeded local steps
on any backend and says what a device hands back (it imports no torch, so the ONNX Runtime agent
uses it); evaluation.py scores examples.
"""
