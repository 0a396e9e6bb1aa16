"""Wire formats of the tensor protocols (Open Inference Protocol V2, TensorFlow Serving REST).

Pure codecs: request bytes -> model inputs, model outputs -> response bytes. The replica runs
them (the gateway only routes and moves bytes); the gateway uses the metadata builders.
"""
